"""Round-trip error of DDIM inversion on the shipped model: ``decode(invert(x_0, τ, n), τ, n)`` against ``x_0``.

    python -m bench.bench_inversion [--n 100] [--tau 100 250 500 750 1000] [--steps 5 10 25]

Prints a markdown table of pixel MSE / RMS / max absolute error (images in [-1, 1]) and the seconds per
round trip, for every depth τ and number of DDIM steps n, on ``--n`` training images (10 per class by default).
"""

from __future__ import annotations

import argparse
import time

import torch

from genreg_core.analysis.feature_space import real_subset
from genreg_core.diffusion.inversion import round_trip_errors
from genreg_core.lab import open_lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--tau", nargs="+", type=int, default=[100, 250, 500, 750, 1000])
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 25])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lab = open_lab(device="cpu")
    ids = real_subset(lab, args.per_class, 0)
    x0, labels = lab.dataset.images[ids], lab.dataset.labels[ids]
    print(f"{len(ids)} training images, {torch.get_num_threads()} threads\n")
    print("| τ | DDIM steps | MSE | RMS | max abs. | s per round trip |")
    print("|---|---|---|---|---|---|")
    for tau in args.tau:
        for n in args.steps:
            start = time.perf_counter()
            (row,) = round_trip_errors(lab.generator, x0, labels, [tau], [n])
            seconds = time.perf_counter() - start
            print(f"| {tau} | {n} | {row['mse']:.5f} | {row['rms']:.4f} | {row['max_abs']:.3f} | {seconds:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()

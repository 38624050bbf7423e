"""Round-trip error of DDIM inversion on the shipped model: ``decode(invert(x_0, τ, n), τ, n)`` against ``x_0``.

    python -m bench.bench_inversion [--n 100] [--tau 100 250 500 750 1000] [--steps 5 10 25]

Prints a markdown table of pixel MSE / RMS / max absolute error (images in [-1, 1]) and the seconds per
round trip, for every depth τ and number of DDIM steps n, on ``--n`` training images (10 per class by default).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from genreg_core.diffusion.inversion import round_trip_errors
from genreg_core.lab import open_lab, real_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--tau", nargs="+", type=int, default=[100, 250, 500, 750, 1000])
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 25])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="bench/results/inversion.md", help="the table, as markdown")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lab = open_lab(device="cpu")
    ids = real_subset(lab, args.per_class, 0)
    x0, labels = lab.dataset.images[ids], lab.dataset.labels[ids]
    lines = [f"# DDIM inversion round trip: `python -m bench.bench_inversion {' '.join(sys.argv[1:])}`", "",
             f"{len(ids)} training images, shipped model, {torch.get_num_threads()} threads; pixel errors on the "
             "[-1, 1] scale", "", "| τ | DDIM steps | MSE | RMS | max abs. | s per round trip |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines))
    for tau in args.tau:
        for n in args.steps:
            start = time.perf_counter()
            (row,) = round_trip_errors(lab.generator, x0, labels, [tau], [n])
            seconds = time.perf_counter() - start
            lines.append(f"| {tau} | {n} | {row['mse']:.5f} | {row['rms']:.4f} | {row['max_abs']:.3f} "
                         f"| {seconds:.1f} |")
            print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

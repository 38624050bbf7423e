"""Reverse-step sweeps over several noise draws and reference sets, on images the generator never saw.

Each seed draws other originals (``per_class`` test images per class: the shipped generator, trained on the
train split only, never saw them), another shared noise draw ε and another disjoint reference set (other test
images); the train-on-reconstruction accuracy is scored on the val split. One JSON list of rows (each with its
``seed``) per run; ``experiments.reproduce --sweep NAME=PATH`` pairs the smallest and largest t by seed:

    python -m experiments.reverse_step_seeds --seeds 0 1 2 3 4 --threads 1
    python -m experiments.reverse_step_seeds --dataset fashion-mnist --seeds 0 1 2 3 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genreg_core.analysis.reverse_step import SweepConfig, run_sweep
from genreg_core.config import DataConfig
from genreg_core.lab import open_lab

OUT = {"digits": "experiments/results/sweep_test_seeds.json",
       "fashion-mnist": "experiments/results/fashion-mnist/sweep_test_seeds.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--t", nargs="+", type=int, default=[100, 500, 900], help="reverse start steps")
    parser.add_argument("--dataset", default="digits", choices=sorted(OUT), help="embedded dataset")
    parser.add_argument("--per-class", type=int, default=15,
                        help="test-split images per class (digits has 36 a class, Fashion-MNIST 100)")
    parser.add_argument("--reference", default="disjoint", choices=["same", "disjoint"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON rows (default: sweep_test_seeds.json in the dataset's results folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lab = open_lab(DataConfig(name=args.dataset), device="cpu")
    out = Path(args.out or OUT[args.dataset])
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {r["seed"] for r in rows}
    for seed in args.seeds:
        if seed in done:
            continue
        config = SweepConfig(t_values=tuple(args.t), per_class=args.per_class, seed=seed, train_accuracy=True,
                             reference=args.reference, source="test")
        rows += run_sweep(lab, config).rows
        out.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"seed {seed}: {len(rows)} rows in {out}", flush=True)


if __name__ == "__main__":
    main()

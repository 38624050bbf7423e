"""λ sweep of MGR's PCR normalisation (sum or mean over the d feature dims) in a reduced, affordable setting.

The sum with λ and the mean with λ·d are the same loss, so every point is also given as the effective
λ of the sum (``λ_sum``). Same protocol as ``experiments.reproduce`` (split and run seeded by the seed, test
accuracy at the best validation-loss epoch), CE alongside; one JSON line per run, then a markdown table:

    python -m experiments.mgr_sweep --per-class 5 --seeds 0 1 --epochs 15 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from genreg_core.config import MGROptions, TrainConfig
from genreg_core.data.datasets import split_dataset
from genreg_core.lab import open_lab
from genreg_core.training.loop import train_classifier

POINTS = (("sum", 1.0), ("sum", 0.3), ("sum", 0.1), ("sum", 0.03), ("mean", 3.0), ("mean", 1.0))


def format_sweep(rows: list[dict], header: str) -> str:
    """Markdown: one line per (reduction, λ), ordered by effective λ, CE first."""
    lines = [header, "", "| PCR | λ | λ_sum (effective) | test accuracy % | runs | mean s / run |",
             "|---|---|---|---|---|---|"]
    unique = {(r["method"], r["reduction"], r["weight"], r["seed"]): r for r in rows}  # a rerun counts once
    groups: dict[tuple, list[dict]] = {}
    for row in unique.values():
        groups.setdefault((row["method"], row["reduction"], row["weight"]), []).append(row)
    d = rows[0]["feature_dim"] if rows else 1
    order = sorted(groups, key=lambda g: (g[0] != "ce", -(g[2] if g[1] == "sum" else g[2] / d)))
    for method, reduction, weight in order:
        members = groups[(method, reduction, weight)]
        acc = 100 * np.array([r["test_accuracy"] for r in members])
        seconds = np.mean([r["seconds"] for r in members])
        if method == "ce":
            lines.append(f"| CE (no PCR) | – | 0 | {acc.mean():.1f} ± {acc.std():.1f} | {len(acc)} | {seconds:.0f} |")
            continue
        effective = weight if reduction == "sum" else weight / d
        lines.append(f"| {reduction} | {weight:g} | {effective:.4f} | {acc.mean():.1f} ± {acc.std():.1f} | {len(acc)} "
                     f"| {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", nargs="+", default=[f"{r}:{w:g}" for r, w in POINTS], metavar="REDUCTION:LAMBDA",
                        help="sweep points, e.g. sum:0.03 mean:3")
    parser.add_argument("--out", default="experiments/results/mgr_sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lab = open_lab(device="cpu")
    jsonl, md = Path(f"{args.out}.jsonl"), Path(f"{args.out}.md")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {(r["method"], r["reduction"], r["weight"], r["seed"]) for r in rows}
    header = (f"# MGR PCR normalisation sweep: digits, {args.per_class} per class, {args.epochs} epochs, seeds "
              f"{args.seeds}, shipped generator (pool), {args.threads} thread(s) per run on a shared 2-core machine")
    points = [(p.split(":")[0], float(p.split(":")[1])) for p in args.points]
    jobs = [("ce", "mean", 0.0)] + [("mgr", red, w) for red, w in points]
    for seed in args.seeds:
        split = split_dataset(lab.dataset.labels, seed, lab.data_config.val_fraction, lab.data_config.test_fraction)
        for method, reduction, weight in jobs:
            if (method, reduction, weight, seed) in done:
                continue
            config = TrainConfig(method=method, per_class=args.per_class, epochs=args.epochs, seed=seed,
                                 mgr=MGROptions(pcr_reduction=reduction, weight=weight, compare_random=False))
            start = time.perf_counter()
            result = train_classifier(lab.dataset, split, config, lab.generator, lab.device)
            row = {"method": method, "reduction": reduction, "weight": weight, "seed": seed,
                   "per_class": args.per_class, "epochs": args.epochs, "feature_dim": config.feature_dim,
                   "test_accuracy": result.test_accuracy, "best_epoch": result.best_epoch,
                   "seconds": time.perf_counter() - start}
            print(json.dumps(row), flush=True)
            with jsonl.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            rows = [json.loads(line) for line in jsonl.read_text().splitlines()]  # other processes' runs too
            md.write_text(format_sweep(rows, header))


if __name__ == "__main__":
    main()

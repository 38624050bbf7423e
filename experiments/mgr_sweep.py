"""λ sweep of MGR's PCR normalisation (sum or mean over the d feature dims) in a reduced, affordable setting.

The sum with λ and the mean with λ·d are the same loss, so every point is also given as the effective
λ of the sum (``λ_sum``). Same protocol as ``experiments.reproduce`` (the lab's one fixed split, the run seeded
by the seed, test accuracy at the best validation-loss epoch), CE alongside; one JSON line per run, then a
markdown table. The point to use is chosen by validation accuracy only (``choose_point``); test accuracy is
reported, never ranked by:

    python -m experiments.mgr_sweep --per-class 5 --seeds 0 1 --epochs 15 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from genreg_core.config import MGROptions, TrainConfig
from genreg_core.data.datasets import ImageDataset, Split
from genreg_core.diffusion.model import Generator
from genreg_core.evaluation.statistics import mean_sd
from genreg_core.lab import open_lab
from genreg_core.training.loop import train_classifier

POINTS = (("sum", 1.0), ("sum", 0.3), ("sum", 0.1), ("sum", 0.03), ("mean", 3.0), ("mean", 1.0))


def run_point(dataset: ImageDataset, split: Split, generator: Generator, method: str, reduction: str,
              weight: float, seed: int, base: TrainConfig) -> dict:
    """One run of the sweep: ``base`` with MGR's PCR (``reduction``, λ = ``weight``) and ``seed``."""
    config = replace(base, method=method, seed=seed,
                     mgr=replace(base.mgr, pcr_reduction=reduction, weight=weight, compare_random=False))
    start = time.perf_counter()
    result = train_classifier(dataset, split, config, generator, "cpu")
    return {"method": method, "reduction": reduction, "weight": weight, "seed": seed,
            "per_class": config.per_class, "epochs": config.epochs, "feature_dim": config.feature_dim,
            "val_accuracy": result.history[result.best_epoch - 1]["val_accuracy"],
            "best_val_loss": result.best_val_loss, "test_accuracy": result.test_accuracy,
            "best_epoch": result.best_epoch, "seconds": time.perf_counter() - start}


def choose_point(rows: list[dict]) -> tuple[str, float]:
    """The MGR (reduction, λ) with the highest mean validation accuracy over its seeds (ties: lower mean validation
    loss); test numbers are never read. ``ValueError`` when there are no MGR rows."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        if r["method"] == "mgr":
            groups.setdefault((r["reduction"], r["weight"]), []).append(r)
    if not groups:
        raise ValueError("no MGR runs to choose a λ from")
    return max(groups, key=lambda g: (np.mean([r["val_accuracy"] for r in groups[g]]),
                                      -np.mean([r["best_val_loss"] for r in groups[g]])))


def format_sweep(rows: list[dict], header: str) -> str:
    """Markdown: one line per (reduction, λ), ordered by effective λ, CE first; the validation-chosen point marked."""
    chosen = choose_point(rows) if any(r["method"] == "mgr" and "val_accuracy" in r for r in rows) else None
    lines = [header, "", "Accuracies in %, mean ± sample std over seeds (ddof = 1). The point to use is the one of "
             "highest validation accuracy (**chosen**); test accuracy is reported, never ranked by.", "",
             "| PCR | λ | λ_sum (effective) | val accuracy % | test accuracy % | runs | mean s / run |",
             "|---|---|---|---|---|---|---|"]
    unique = {(r["method"], r["reduction"], r["weight"], r["seed"]): r for r in rows}  # a rerun counts once
    groups: dict[tuple, list[dict]] = {}
    for row in unique.values():
        groups.setdefault((row["method"], row["reduction"], row["weight"]), []).append(row)
    d = rows[0]["feature_dim"] if rows else 1
    order = sorted(groups, key=lambda g: (g[0] != "ce", -(g[2] if g[1] == "sum" else g[2] / d)))
    def cell(members: list[dict], key: str) -> str:
        mean, sd, n = mean_sd([100 * r[key] for r in members if key in r])
        return "–" if n == 0 else f"{mean:.1f}" + ("" if n < 2 else f" ± {sd:.1f}")

    for method, reduction, weight in order:
        members = groups[(method, reduction, weight)]
        seconds = np.mean([r["seconds"] for r in members])
        numbers = f"{cell(members, 'val_accuracy')} | {cell(members, 'test_accuracy')} | {len(members)} | {seconds:.0f}"
        if method == "ce":
            lines.append(f"| CE (no PCR) | – | 0 | {numbers} |")
            continue
        effective = weight if reduction == "sum" else weight / d
        mark = " **chosen**" if chosen == (reduction, weight) else ""
        lines.append(f"| {reduction}{mark} | {weight:g} | {effective:.4f} | {numbers} |")
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
    rows = [r for r in rows if "val_accuracy" in r]  # runs of the per-seed-split protocol (no val record) are dropped
    done = {(r["method"], r["reduction"], r["weight"], r["seed"]) for r in rows}
    header = (f"# MGR PCR normalisation sweep: digits, {args.per_class} per class, {args.epochs} epochs, seeds "
              f"{args.seeds}, shipped generator (pool), {args.threads} thread(s) per run on a shared 2-core machine")
    points = [(p.split(":")[0], float(p.split(":")[1])) for p in args.points]
    jobs = [("ce", "mean", 0.0)] + [("mgr", red, w) for red, w in points]
    base = TrainConfig(per_class=args.per_class, epochs=args.epochs, mgr=MGROptions())
    for seed in args.seeds:
        for method, reduction, weight in jobs:
            if (method, reduction, weight, seed) in done:
                continue
            row = run_point(lab.dataset, lab.split, lab.generator, method, reduction, weight, seed, base)
            print(json.dumps(row), flush=True)
            with jsonl.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            rows = [r for r in map(json.loads, jsonl.read_text().splitlines()) if "val_accuracy" in r]  # others' too
            md.write_text(format_sweep(rows, header))


if __name__ == "__main__":
    main()

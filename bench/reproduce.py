"""Reproduce the small-data comparison: methods × images per class × seeds on digits with the shipped generator.

Protocol of ALGORITHMS.md: for each seed a fixed stratified train / val / test split (``split_dataset``
with that seed) and the same seed for the run; test accuracy at the best validation-loss epoch;
mean ± std over seeds. Writes a markdown table (rewritten after every run, so partial results survive):

    python -m bench.reproduce                                   # everything: slow on CPU
    python -m bench.reproduce --methods ce adarand --settings 10 --seeds 0 --epochs 5 --out /tmp/r.md
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from genreg_core.config import TrainConfig
from genreg_core.data import split_dataset
from genreg_core.lab import open_lab
from genreg_core.methods import METHODS
from genreg_core.training import train_classifier

Results = dict[tuple[str, int], list[tuple[float, float]]]  # (method, per_class) -> [(test accuracy, seconds)]


def format_table(results: Results, methods: list[str], settings: list[int], header: str) -> str:
    """Markdown: accuracy mean ± std per method and setting, then mean wall time per run."""
    columns = " | ".join(f"{n} / class" for n in settings)
    rule = "|".join(["---"] * (len(settings) + 1))
    lines = [header, "", "Test accuracy at the best validation-loss epoch, mean ± std over seeds (runs).", "",
             f"| method | {columns} |", f"|{rule}|"]
    for method in methods:
        cells = []
        for n in settings:
            accs = [a for a, _ in results.get((method, n), [])]
            cells.append(f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs):.1f} ({len(accs)})" if accs else "–")
        lines.append(f"| {method} | {' | '.join(cells)} |")
    lines += ["", "Mean wall time per run (s).", "", f"| method | {columns} |", f"|{rule}|"]
    for method in methods:
        cells = [f"{np.mean([s for _, s in results[(method, n)]]):.1f}" if results.get((method, n)) else "–"
                 for n in settings]
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["field=value", ...]`` -> TrainConfig keyword arguments; ``ValueError`` for an unknown field."""
    known = {f.name for f in fields(TrainConfig)}
    overrides: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--set takes FIELD=VALUE with a TrainConfig field, got {item!r}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--settings", nargs="+", type=int, default=[5, 10, 25], help="images per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="bench/results/reproduce.md")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override TrainConfig fields, e.g. semantic_eps=0 (values parsed as JSON, else text)")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    if args.threads:
        torch.set_num_threads(args.threads)
    lab = open_lab(device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# genreg reproduction: digits, generator = {lab.generator.source}\n\n"
              f"{args.epochs} epochs, seeds {args.seeds}, device {lab.device} ({platform.processor() or 'cpu'}, "
              f"{torch.get_num_threads()} threads), defaults of TrainConfig otherwise"
              f"{' (overrides: ' + ', '.join(args.set) + ')' if args.set else ''}.")
    results: Results = {}
    for seed in args.seeds:
        split = split_dataset(lab.dataset.labels, seed, lab.data_config.val_fraction, lab.data_config.test_fraction)
        for n in args.settings:
            for method in args.methods:
                config = replace(TrainConfig(**overrides), method=method, per_class=n, epochs=args.epochs, seed=seed)
                start = time.perf_counter()
                result = train_classifier(lab.dataset, split, config, lab.generator, lab.device)
                seconds = time.perf_counter() - start
                results.setdefault((method, n), []).append((result.test_accuracy, seconds))
                print(f"seed {seed}  {n:3d}/class  {method:12s} test accuracy {result.test_accuracy:.3f} "
                      f"(best epoch {result.best_epoch})  {seconds:.1f} s", flush=True)
                out.write_text(format_table(results, args.methods, args.settings, header))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Reproduce the papers' claims: init × generator regime × methods × images per class × seeds on digits.

Protocol (docs/results.md): ONE fixed stratified train / val / test split per dataset (the lab's, from
``DataConfig.split_seed``), the same for every seed and every method, so no shipped model (generator, feature
extractor, self-supervised backbone) ever saw a test image; the seed varies only the labelled per-class subset,
the initialisation, the batches and the noise. Test accuracy at the best validation-loss epoch; methods are
compared by paired differences over seeds (``genreg_core.evaluation.statistics``). Methods that use no
generator (ce, randreg, adarand) run once per init and count under every regime. Each finished run is appended
to ``--results`` (JSON lines; rerunning skips what is there, so the grid can be run in pieces and in parallel
processes with different flags). After every run the accuracy tables (``--out``) and the claims table
(``--claims``: markdown and JSON, via ``genreg_core.analysis.claims``) are rewritten:

    python -m experiments.reproduce --inits scratch --regimes pool own --methods ce randreg adarand gda \\
        --settings 5 10 25 --seeds 0 1 2 --threads 1
    python -m experiments.reproduce --report-only --sweep classifier=bench/results/sweep_classifier.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from genreg_core.analysis.claims import (
    CLAIMS_PATH,
    claims_markdown,
    claims_summary,
    judge_claims,
    method_key,
    save_claims,
    write_readme_claims,
)
from genreg_core.config import GENERATOR_REGIMES, TrainConfig, override
from genreg_core.data.datasets import Split
from genreg_core.evaluation.statistics import SPREAD_NOTE, mean_sd
from genreg_core.lab import Lab, open_lab
from genreg_core.runs.grid import parse_overrides
from genreg_core.training.generator_regime import get_own_generator
from genreg_core.training.loop import train_classifier
from genreg_core.training.methods import GENERATOR_METHODS, METHODS, make_method

COST_ORDER = ("ce", "randreg", "adarand", "gda", "mgr", "mgr+adarand", "semantic", "gssl")  # cheap methods first
Row = dict


def format_tables(rows: list[Row], header: str) -> str:
    """Markdown: per init and regime, accuracy mean ± sample std (ddof 1) over seeds (runs) and mean CPU time per
    method (with its config overrides: ``mgr[meta_val_budget=extra]``) and setting."""
    settings = sorted({r["per_class"] for r in rows})
    columns = " | ".join(f"{n} / class" for n in settings)
    rule = "|".join(["---"] * (2 * len(settings) + 1))
    lines = [header, "", f"Test accuracy (%) at the best validation-loss epoch on the one fixed test set, mean; "
             f"{SPREAD_NOTE}; (runs). Then the mean CPU time per run (s; one thread per run, so about the wall time "
             "on an idle machine; ʷ marks wall seconds of runs recorded without CPU time). Methods without a "
             "generator (ce, randreg, adarand) are the same runs under both regimes. Methods are compared by paired "
             "differences in the claims table, not by these spreads.", ""]
    keys = sorted({method_key(r) for r in rows}, key=lambda k: (COST_ORDER.index(k.split("[")[0])
                                                              if k.split("[")[0] in COST_ORDER else 99, k))
    for init in sorted({r["init"] for r in rows}):
        for regime in sorted({r["regime"] for r in rows}):
            lines += [f"### init = {init}, generator regime = {regime}", "",
                      f"| method | {columns} | {' | '.join(f'{n} pc s' for n in settings)} |", f"|{rule}|"]
            for key in keys:
                uses = key.split("[")[0] in GENERATOR_METHODS
                runs = [r for r in rows if r["init"] == init and method_key(r) == key
                        and (r["regime"] == regime or not uses)]
                if not runs:
                    continue
                acc, sec = [], []
                for n in settings:
                    cell = [r for r in runs if r["per_class"] == n]
                    mean, sd, count = mean_sd([100 * r["test_accuracy"] for r in cell])
                    acc.append("–" if not count else f"{mean:.1f}" + (f" ± {sd:.1f}" if count > 1 else "")
                               + f" ({count})")
                    if not cell:
                        sec.append("–")
                    elif all("cpu_seconds" in r for r in cell):
                        sec.append(f"{np.mean([r['cpu_seconds'] for r in cell]):.0f}")
                    else:
                        sec.append(f"{np.mean([r['seconds'] for r in cell]):.0f}ʷ")
                lines.append(f"| {key} | {' | '.join(acc)} | {' | '.join(sec)} |")
            lines.append("")
    return "\n".join(lines)


def _load_rows(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _load_sweeps(specs: list[str]) -> dict[str, list[Row]]:
    sweeps = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise ValueError(f"--sweep takes NAME=PATH, got {spec!r}")
        sweeps[name] = json.loads(Path(path).read_text())
    return sweeps


def write_reports(rows: list[Row], args: argparse.Namespace, header: str) -> None:
    Path(args.out).write_text(format_tables(rows, header))
    claims = judge_claims(rows, _load_sweeps(args.sweep), frozenset(GENERATOR_METHODS))
    datasets = sorted({r.get("dataset", "digits") for r in rows}) or ["digits"]
    if len(datasets) > 1:
        raise ValueError(f"{args.results} mixes datasets {datasets}: one results file per dataset")
    setting = (f"{datasets[0]}; {len(rows)} runs on one fixed test set (split seed "
               f"{sorted({r.get('split_seed') for r in rows}, key=str)}); inits {sorted({r['init'] for r in rows})}, "
               f"regimes {sorted({r['regime'] for r in rows})}, per class {sorted({r['per_class'] for r in rows})}, "
               f"seeds {sorted({r['seed'] for r in rows})}, epochs {sorted({r['epochs'] for r in rows})}")
    Path(f"{args.claims}.md").write_text(f"# Claims on our runs\n\n{setting}; sweeps: "
                                         f"{', '.join(args.sweep) or 'none'}.\n\n{claims_markdown(claims)}")
    save_claims(claims, args.claims_json, datasets[0], {"setting": setting, "sweeps": args.sweep})
    write_readme_claims(args.readme, claims_summary(claims, f"{args.claims}.md", datasets[0]))


def grid_split(lab: Lab, seed: int) -> Split:
    """The split a grid run of ``seed`` trains, selects and tests on: the lab's one fixed split, whatever the seed
    (the seed varies the labelled subset, the initialisation and the noise through ``TrainConfig.seed``)."""
    del seed  # never changes the split: every seed is tested on the same images
    return lab.split


def _run(lab: Lab, args: argparse.Namespace, init: str, regime: str, method: str, n: int, seed: int) -> Row:
    split = grid_split(lab, seed)
    config = TrainConfig()
    for key, value in parse_overrides(args.set).items():
        config = override(config, key, value)
    config = replace(config, method=method, per_class=n, epochs=args.epochs, seed=seed, init=init,
                     generator_regime=regime)
    generator = lab.generator
    if regime == "own" and make_method(method, config).needs_generator:
        generator = get_own_generator(lab.dataset, split, lab.data_config, config, lab.device)
    start, cpu = time.perf_counter(), time.process_time()
    result = train_classifier(lab.dataset, split, config, generator, lab.device)
    row = {"init": init, "regime": regime, "method": method, "per_class": n, "seed": seed, "epochs": args.epochs,
           "test_accuracy": result.test_accuracy, "best_epoch": result.best_epoch,
           "val_accuracy": result.history[result.best_epoch - 1]["val_accuracy"], "best_val_loss": result.best_val_loss,
           "split_seed": lab.data_config.split_seed, "dataset": lab.data_config.name, "set": sorted(args.set),
           "n_ce_labels": len(result.train_indices), "n_meta_labels": len(result.meta_indices),
           "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
    if make_method(method, config).needs_meta_validation:
        row["budget"] = config.meta_val_budget
    return row


def _row_key(r: Row) -> tuple:
    return (r["init"], r["regime"], r["method"], r["per_class"], r["seed"], r["epochs"], tuple(r.get("set", ())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", nargs="+", default=["scratch", "pretrained"], choices=["scratch", "pretrained"])
    parser.add_argument("--regimes", nargs="+", default=list(GENERATOR_REGIMES), choices=list(GENERATOR_REGIMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--settings", nargs="+", type=int, default=[5, 10, 25], help="images per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--results", default="experiments/results/grid.jsonl", help="one JSON line per finished run")
    parser.add_argument("--out", default="experiments/results/reproduce.md")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override TrainConfig fields, e.g. semantic.eps=0 (values parsed as JSON, else text)")
    parser.add_argument("--claims", default="experiments/results/claims", help="writes CLAIMS.md")
    parser.add_argument("--claims-json", default=str(CLAIMS_PATH), help="the claims the Home page shows (package data)")
    parser.add_argument("--readme", default="README.md", help="whose generated claims block is rewritten")
    parser.add_argument("--sweep", nargs="*", default=[], metavar="NAME=PATH",
                        help="reverse-step sweeps (genreg sweep --json) for the diversity claim")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the tables from --results")
    args = parser.parse_args()
    parse_overrides(args.set)  # refuse a bad --set before any run
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# genreg reproduction grid: digits ({platform.processor() or 'cpu'}; CPU and wall seconds of every "
              f"run are in the results file; commands in the README)")
    if args.report_only:
        write_reports(_load_rows(results), args, header)
        return
    lab = open_lab(device=args.device)
    methods = [m for m in COST_ORDER if m in args.methods]
    for method in methods:
        regimes = args.regimes if method in GENERATOR_METHODS else args.regimes[:1]
        for init in args.inits:
            for regime in regimes:
                for n in args.settings:
                    for seed in args.seeds:
                        done = {_row_key(r) for r in _load_rows(results)}
                        if (init, regime, method, n, seed, args.epochs, tuple(sorted(args.set))) in done:
                            continue
                        row = _run(lab, args, init, regime, method, n, seed)
                        print(json.dumps(row), flush=True)
                        with results.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                        write_reports(_load_rows(results), args, header)
    print(f"wrote {args.out}, {args.claims}.md and {args.claims_json}")


if __name__ == "__main__":
    main()

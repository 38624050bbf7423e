"""Reproduce the papers' claims: init × generator regime × methods × images per class × seeds on digits.

Protocol of docs/algorithms.md: for each seed a fixed stratified train / val / test split (``split_dataset``
with that seed) and the same seed for the run; test accuracy at the best validation-loss epoch; mean ±
std over seeds. Methods that use no generator (ce, randreg, adarand) run once per init and count under
every regime. The runs go through ``genreg grid`` (``genreg_core.runs.grid``: recorded in the run store, cells
already finished there skipped, ``--engine local|ray``); each finished cell is appended to ``--results`` (JSON
lines; cells already there are not appended again). Then the accuracy tables (``--out``) and the claims table
(``--claims``: markdown and JSON, via ``genreg_core.analysis.claims``) are rewritten:

    python -m experiments.reproduce --inits scratch --regimes pool own --methods ce randreg adarand gda \\
        --settings 5 10 25 --seeds 0 1 2 --threads 1
    python -m experiments.reproduce --report-only --sweep classifier=bench/results/sweep_classifier.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from genreg_core.analysis.claims import (
    CLAIMS_PATH,
    claims_markdown,
    claims_summary,
    judge_claims,
    save_claims,
    write_readme_claims,
)
from genreg_core.config import GENERATOR_REGIMES, TrainConfig
from genreg_core.runs.engines import ENGINES, Resources, make_engine
from genreg_core.runs.grid import COST_ORDER, GridSpec, parse_overrides, run_grid
from genreg_core.runs.store import RunStore
from genreg_core.training.methods import GENERATOR_METHODS, METHODS

Row = dict


def format_tables(rows: list[Row], header: str) -> str:
    """Markdown: per init and regime, accuracy mean ± std (runs) and mean CPU time per method and setting."""
    settings = sorted({r["per_class"] for r in rows})
    columns = " | ".join(f"{n} / class" for n in settings)
    rule = "|".join(["---"] * (2 * len(settings) + 1))
    lines = [header, "", "Test accuracy (%) at the best validation-loss epoch, mean ± std over seeds (runs), and "
             "mean CPU time per run (s; one thread per run, so about the wall time on an idle machine; ʷ marks "
             "wall seconds of runs recorded before CPU time was, on a loaded machine). Methods without a generator "
             "(ce, randreg, adarand) are the same runs under both regimes.", ""]
    for init in sorted({r["init"] for r in rows}):
        for regime in sorted({r["regime"] for r in rows}):
            lines += [f"### init = {init}, generator regime = {regime}", "",
                      f"| method | {columns} | {' | '.join(f'{n} pc s' for n in settings)} |", f"|{rule}|"]
            for method in COST_ORDER:
                uses = method in GENERATOR_METHODS
                runs = [r for r in rows if r["init"] == init and r["method"] == method
                        and (r["regime"] == regime or not uses)]
                if not runs:
                    continue
                acc, sec = [], []
                for n in settings:
                    cell = [r for r in runs if r["per_class"] == n]
                    a = [r["test_accuracy"] for r in cell]
                    acc.append(f"{100 * np.mean(a):.1f} ± {100 * np.std(a):.1f} ({len(a)})" if a else "–")
                    if not cell:
                        sec.append("–")
                    elif all("cpu_seconds" in r for r in cell):
                        sec.append(f"{np.mean([r['cpu_seconds'] for r in cell]):.0f}")
                    else:
                        sec.append(f"{np.mean([r['seconds'] for r in cell]):.0f}ʷ")
                lines.append(f"| {method} | {' | '.join(acc)} | {' | '.join(sec)} |")
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
    claims = judge_claims(rows, _load_sweeps(args.sweep))
    setting = (f"digits; {len(rows)} runs; inits {sorted({r['init'] for r in rows})}, regimes "
               f"{sorted({r['regime'] for r in rows})}, per class {sorted({r['per_class'] for r in rows})}, seeds "
               f"{sorted({r['seed'] for r in rows})}, epochs {sorted({r['epochs'] for r in rows})}")
    Path(f"{args.claims}.md").write_text(f"# Claims on our runs\n\n{setting}; sweeps: "
                                         f"{', '.join(args.sweep) or 'none'}.\n\n{claims_markdown(claims)}")
    save_claims(claims, args.claims_json, {"setting": setting, "sweeps": args.sweep})
    write_readme_claims(args.readme, claims_summary(claims, f"{args.claims}.md"))


def run_cells(args: argparse.Namespace, results: Path) -> list[Row]:
    """Run the grid of the flags with ``genreg_core.runs.grid`` and append its finished cells that ``results`` lacks;
    returns every row of ``results``."""
    grid = GridSpec(methods=tuple(args.methods), per_class=tuple(args.settings), seeds=tuple(args.seeds),
                    inits=tuple(args.inits), regimes=tuple(args.regimes), epochs=args.epochs,
                    overrides=parse_overrides(args.set), device=args.device)
    store = RunStore(tracking_uri=args.tracking_uri)
    engine = make_engine(args.engine, store, Resources(cpu=args.threads or 1), args.address)
    result = run_grid(store, grid, engine, on_progress=lambda p: print(p.line(), file=sys.stderr, flush=True))
    key = ("init", "regime", "method", "per_class", "seed", "epochs")
    done = {tuple(r[k] for k in key) for r in _load_rows(results)}
    with results.open("a") as handle:
        for row in result.rows():
            if tuple(row[k] for k in key) not in done:
                handle.write(json.dumps(row) + "\n")
    for cell in result.cells:
        if cell.status == "failed":
            print(f"FAILED {cell.cell.label()}: {cell.error}", file=sys.stderr)
    return _load_rows(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", nargs="+", default=["scratch", "pretrained"], choices=["scratch", "pretrained"])
    parser.add_argument("--regimes", nargs="+", default=list(GENERATOR_REGIMES), choices=list(GENERATOR_REGIMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--settings", nargs="+", type=int, default=[5, 10, 25], help="images per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (default 1)")
    parser.add_argument("--engine", choices=list(ENGINES), default="local", help="where the runs execute")
    parser.add_argument("--address", default=None, help="--engine ray: the cluster (default RAY_ADDRESS, else local)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default MLFLOW_TRACKING_URI, else local)")
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
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# genreg reproduction grid: digits ({platform.processor() or 'cpu'}; CPU and wall seconds of every "
              f"run are in the results file; commands in the README)")
    rows = _load_rows(results) if args.report_only else run_cells(args, results)
    write_reports(rows, args, header)
    print(f"wrote {args.out}, {args.claims}.md and {args.claims_json}")


if __name__ == "__main__":
    main()

"""Reproduce the papers' claims: init × generator regime × methods × images per class × seeds, per dataset.

A thin caller of ``genreg grid`` (``genreg_core.runs.grid.run_grid``: the local pool or Ray, resumable through the
run store) that keeps every finished cell as one JSON line of ``--results`` (the dataset's own folder:
``experiments/results/`` for digits, ``experiments/results/fashion-mnist/`` for Fashion-MNIST; a cell already
there is not run again, so the grid runs in pieces) and rewrites, after every cell, the accuracy tables
(``--out``) and the claims table (``--claims``: markdown and JSON, via ``genreg_core.analysis.claims``; the
README's block shows every dataset's verdicts).

Protocol (docs/results.md): ONE fixed stratified train / val / test split per dataset (the lab's, from
``DataConfig.split_seed``), the same for every seed and every method, so no shipped model (generator, feature
extractor, self-supervised backbone) ever saw a test image; the seed varies only the labelled per-class subset,
the initialisation, the batches and the noise. Test accuracy at the best validation-loss epoch; methods are
compared by paired differences over seeds (``genreg_core.evaluation.statistics``). Methods that use no
generator (ce, randreg, adarand) run once per init and count under every regime. ``--generator shipped-early``
(the quality dial) is recorded in each row and keeps its runs apart (``gda[generator=shipped-early]``):

    python -m experiments.reproduce --inits scratch --regimes pool own --methods ce randreg adarand gda \\
        --settings 5 10 25 --seeds 0 1 2
    python -m experiments.reproduce --dataset fashion-mnist --inits scratch --methods gda --settings 10 \\
        --generator shipped-early --workers 2
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
    claim_datasets,
    claims_markdown,
    claims_summary,
    judge_claims,
    load_claims,
    method_key,
    save_claims,
    write_readme_claims,
)
from genreg_core.config import GENERATOR_REGIMES, DataConfig, TrainConfig
from genreg_core.evaluation.statistics import SPREAD_NOTE, mean_sd
from genreg_core.runs.engines import ENGINES, Resources, make_engine
from genreg_core.runs.grid import COST_ORDER, Cell, CellState, GridSpec, parse_overrides, run_grid
from genreg_core.runs.store import RunStore
from genreg_core.training.methods import GENERATOR_METHODS, METHODS, make_method

Row = dict
RESULTS_DIRS = {"digits": Path("experiments/results"), "fashion-mnist": Path("experiments/results/fashion-mnist")}


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
    test_sizes = sorted({r.get("n_test") for r in rows}, key=lambda n: n or 0)
    if len(test_sizes) > 1:  # a row without n_test predates held-out scoring: never pooled with one that has it
        raise ValueError(f"{args.results} mixes test sets of {test_sizes} images: one test set per results file")
    of = f" of {test_sizes[0]:,} images" if test_sizes and test_sizes[0] else ""
    setting = (f"{datasets[0]}; {len(rows)} runs on one fixed test set{of} (split seed "
               f"{sorted({r.get('split_seed') for r in rows}, key=str)}); inits {sorted({r['init'] for r in rows})}, "
               f"regimes {sorted({r['regime'] for r in rows})}, per class {sorted({r['per_class'] for r in rows})}, "
               f"seeds {sorted({r['seed'] for r in rows})}, epochs {sorted({r['epochs'] for r in rows})}")
    Path(f"{args.claims}.md").write_text(f"# Claims on our runs\n\n{setting}; sweeps: "
                                         f"{', '.join(args.sweep) or 'none'}.\n\n{claims_markdown(claims)}")
    save_claims(claims, args.claims_json, datasets[0], {"setting": setting, "sweeps": args.sweep})
    summaries = []
    for dataset in claim_datasets(args.claims_json):  # the README shows every dataset's verdicts
        details = f"{args.claims}.md" if dataset == datasets[0] else str(RESULTS_DIRS.get(dataset, Path()) /
                                                                          "claims.md")
        summaries.append(claims_summary(load_claims(args.claims_json, dataset)[0], details, dataset))
    write_readme_claims(args.readme, "\n".join(summaries))


def grid_of(args: argparse.Namespace) -> GridSpec:
    """The ``genreg grid`` of the flags: every cell on the dataset's one fixed split (``GridSpec.split_seed`` None)."""
    return GridSpec(methods=tuple(m for m in COST_ORDER if m in args.methods), per_class=tuple(args.settings),
                    seeds=tuple(args.seeds), inits=tuple(args.inits), regimes=tuple(args.regimes), epochs=args.epochs,
                    data=DataConfig(name=args.dataset), overrides=parse_overrides(args.set),
                    base=TrainConfig.tiny() if args.preset == "tiny" else TrainConfig(),
                    generator=args.generator, device=args.device)


def _row_key(r: Row) -> tuple:
    return (r["init"], r["regime"], r["method"], r["per_class"], r["seed"], r["epochs"], tuple(r.get("set", ())),
            r.get("generator"))


def _cell_key(cell: Cell, args: argparse.Namespace) -> tuple:
    generator = args.generator if cell.method in GENERATOR_METHODS else None
    return (cell.init, cell.regime, cell.method, cell.per_class, cell.seed, args.epochs, tuple(sorted(args.set)),
            generator)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", nargs="+", default=["scratch", "pretrained"], choices=["scratch", "pretrained"])
    parser.add_argument("--regimes", nargs="+", default=list(GENERATOR_REGIMES), choices=list(GENERATOR_REGIMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--settings", nargs="+", type=int, default=[5, 10, 25], help="images per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--dataset", default="digits", choices=sorted(RESULTS_DIRS),
                        help="embedded dataset; its results live in their own folder (one results file per dataset)")
    parser.add_argument("--generator", default=None,
                        help="generator of the generator methods (default: the shipped model; shipped-early: the "
                             "early checkpoint, the quality dial); recorded in each row")
    parser.add_argument("--preset", choices=["default", "tiny"], default="default",
                        help="tiny: the tests' small model and batches")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of each run")
    parser.add_argument("--workers", type=int, default=1, help="runs at once (local engine)")
    parser.add_argument("--engine", choices=list(ENGINES), default="local", help="where the runs execute (genreg grid)")
    parser.add_argument("--address", default=None, help="ray: the cluster (default RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking store of the runs (default MLFLOW_TRACKING_URI, else $GENREG_HOME's)")
    parser.add_argument("--results", default=None, help="one JSON line per finished run (default: grid.jsonl in "
                                                        "the dataset's results folder)")
    parser.add_argument("--out", default=None, help="the accuracy tables (default: reproduce.md beside --results)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override TrainConfig fields, e.g. semantic.eps=0 (values parsed as JSON, else text)")
    parser.add_argument("--claims", default=None, help="writes CLAIMS.md and its JSON (default: claims beside "
                                                       "--results)")
    parser.add_argument("--claims-json", default=str(CLAIMS_PATH), help="the claims the Home page shows (package data)")
    parser.add_argument("--readme", default="README.md", help="whose generated claims block is rewritten")
    parser.add_argument("--sweep", nargs="*", default=[], metavar="NAME=PATH",
                        help="reverse-step sweeps (genreg sweep --json) for the diversity claim")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the tables from --results")
    args = parser.parse_args(argv)
    parse_overrides(args.set)  # refuse a bad --set before any run
    folder = RESULTS_DIRS[args.dataset]
    args.results = args.results or str(folder / "grid.jsonl")
    args.out = args.out or str(Path(args.results).with_name("reproduce.md"))
    args.claims = args.claims or str(Path(args.results).with_name("claims"))
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# genreg reproduction grid: {args.dataset} ({platform.processor() or 'cpu'}; CPU and wall seconds "
              f"of every run are in the results file; commands in docs/results.md)")
    if args.report_only:
        write_reports(_load_rows(results), args, header)
        return
    recorded = {_row_key(r) for r in _load_rows(results)}

    def keep(state: CellState) -> None:
        row = {**state.row(), "set": sorted(args.set)}
        if make_method(state.spec.train.method, state.spec.train).needs_meta_validation:
            row["budget"] = state.spec.train.meta_val_budget
        print(json.dumps(row), flush=True)
        with results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        write_reports(_load_rows(results), args, header)

    store = RunStore(tracking_uri=args.tracking_uri)
    engine = make_engine(args.engine, store, Resources(cpu=args.threads), args.address)
    if args.engine == "local":
        engine.max_concurrent = args.workers
    result = run_grid(store, grid_of(args), engine, on_progress=lambda p: print(p.line(), file=sys.stderr, flush=True),
                      exclude=lambda cell: _cell_key(cell, args) in recorded, on_cell=keep)
    for state in result.cells:  # finished in the store by an earlier, interrupted call: recorded here too
        if state.skipped:
            keep(state)
    for state in result.cells:
        if state.status == "failed":
            print(f"FAILED {state.cell.label()}: {state.error}", file=sys.stderr)
    print(f"wrote {args.out}, {args.claims}.md and {args.claims_json}")


if __name__ == "__main__":
    main()

"""``genreg grid``: methods × images per class × seeds (× inits × regimes) on the local pool or on Ray.

Cells already FINISHED in the store are skipped, so a grid resumes after an interruption; the end prints the
mean ± sample std (ddof 1) table and the claims table (``genreg_core.analysis.claims``) of the grid's cells.
"""

from __future__ import annotations

import argparse
import json
import sys

from genreg_core.cli.args import MAX_EPOCHS, SEED, int_in, per_class_or_all, text
from genreg_core.cli.common import add_data_args

MAX_RETRIES = 10


def _names(items: list[str]) -> tuple[str, ...]:
    """``["ce,gda", "mgr"]`` -> ``("ce", "gda", "mgr")``: space- or comma-separated lists both work."""
    return tuple(dict.fromkeys(n.strip() for item in items for n in item.split(",") if n.strip()))


def _progress_printer():
    """One live progress line on stderr: rewritten in place on a terminal, one line per change otherwise."""
    tty = sys.stderr.isatty()

    def show(progress) -> None:
        print(("\r" if tty else "") + progress.line(), end="" if tty else "\n", file=sys.stderr, flush=True)

    return show, tty


def grid_spec(args: argparse.Namespace):
    """The GridSpec of the command's flags; ``ValueError`` for a bad method, preset or ``--set``."""
    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.runs.grid import GridSpec, parse_overrides

    if args.preset not in ("default", "tiny"):
        raise ValueError(f"unknown preset {args.preset!r} (known: default, tiny)")
    return GridSpec(
        methods=_names(args.methods), per_class=tuple(dict.fromkeys(args.per_class)),
        seeds=tuple(dict.fromkeys(args.seeds)), inits=tuple(dict.fromkeys(args.inits)),
        regimes=tuple(dict.fromkeys(args.regimes)), epochs=args.epochs,
        data=DataConfig(name=args.dataset, root=args.data_root, image_size=args.image_size),
        split_seed=args.split_seed, base=TrainConfig.tiny() if args.preset == "tiny" else TrainConfig(),
        overrides=parse_overrides(args.set), generator=args.generator, device=args.device)


def cmd_grid(args: argparse.Namespace) -> int:
    from genreg_core.analysis.claims import claims_markdown, judge_claims
    from genreg_core.cli.runs import check_before_training
    from genreg_core.runs.engines import check_engine, make_engine, parse_resources
    from genreg_core.runs.grid import cell_spec, expand_cells, format_grid_table, grid_table, run_grid
    from genreg_core.runs.store import RunStore
    from genreg_core.training.loop import check_train_config

    resources = parse_resources(args.resources_per_run)
    check_engine(args.engine, args.address)
    grid = grid_spec(args)
    cells = expand_cells(grid)
    for cell in cells:
        check_train_config(cell_spec(grid, cell).train)
    store = RunStore(tracking_uri=args.tracking_uri)
    store.experiment_id  # noqa: B018 - an unreachable server or a damaged store fails here, before any work
    first = cell_spec(grid, cells[0])
    skipped = check_before_training(first.train, first.data, first.generator)
    engine = make_engine(args.engine, store, resources, args.address)
    show, tty = _progress_printer()
    result = run_grid(store, grid, engine, retries=args.retries, on_progress=show)
    if tty:
        print(file=sys.stderr)
    rows = result.rows()
    table = grid_table(rows)
    claims = judge_claims([r for r in rows if r["per_class"] is not None])
    progress = result.progress
    if args.json:
        print(json.dumps({"grid_id": result.grid_id, "store": store.location, "engine": args.engine,
                          "progress": {"done": progress.done, "running": progress.running, "failed": progress.failed,
                                       "left": progress.left},
                          "ran": result.ran, "cells": [c.as_dict() for c in result.cells], "table": table,
                          "claims": [{"key": c.key, "claim": c.claim, "verdict": c.verdict, "numbers": c.numbers}
                                     for c in claims], "skipped": skipped}))
    else:
        print(f"grid {result.grid_id}: {len(result.cells)} cells, {result.ran} run(s) started here, "
              f"{sum(c.skipped for c in result.cells)} already recorded; store {store.location}\n")
        print(format_grid_table(table))
        for cell in result.cells:
            if cell.status == "failed":
                print(f"FAILED {cell.cell.label()} after {cell.attempts} attempt(s): {cell.error}")
        print("\n" + claims_markdown(claims))
    return 1 if progress.failed else 0


def add_grid_command(sub) -> None:
    """Register ``grid`` on the CLI's subparsers."""
    from genreg_core.config import GENERATOR_REGIMES
    from genreg_core.runs.engines import ENGINES

    p = sub.add_parser("grid", help="run methods × images per class × seeds (resumable) on the local pool or Ray")
    p.add_argument("--methods", nargs="+", required=True, help="methods, e.g. ce gda mgr (or ce,gda,mgr)")
    p.add_argument("--per-class", type=per_class_or_all, nargs="+", required=True,
                   help="training images per class, each a positive integer or 'all'")
    p.add_argument("--seeds", type=SEED, nargs="+", required=True)
    p.add_argument("--inits", nargs="+", choices=["scratch", "pretrained"], default=["scratch"])
    p.add_argument("--regimes", nargs="+", choices=list(GENERATOR_REGIMES), default=["pool"],
                   help="generator regimes (only methods that use a generator run under more than the first)")
    add_data_args(p)
    p.set_defaults(split_seed=None)
    p.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=30)
    p.add_argument("--engine", choices=list(ENGINES), default="local",
                   help="local: this machine's background workers | ray: one Ray task per run")
    p.add_argument("--address", type=text, default=None,
                   help="ray: the cluster (HOST:PORT, ray://HOST:PORT or auto; default RAY_ADDRESS, else a new local "
                        "Ray with this machine's cores)")
    p.add_argument("--resources-per-run", type=text, default="cpu=1,gpu=0",
                   help="what each run asks for, cpu=N,gpu=G (cpu is also its torch threads)")
    p.add_argument("--tracking-uri", type=text, default=None,
                   help="MLflow tracking store: http(s)://HOST:PORT of an `mlflow server`, or sqlite:///PATH "
                        "(default MLFLOW_TRACKING_URI, else $GENREG_HOME/mlflow.db)")
    p.add_argument("--retries", type=int_in(0, MAX_RETRIES), default=1,
                   help="new attempts of a failed run before its cell is recorded FAILED")
    p.add_argument("--preset", choices=["default", "tiny"], default="default")
    p.add_argument("--set", type=text, nargs="*", default=[], metavar="FIELD=VALUE",
                   help="TrainConfig fields set on every run, e.g. mgr.weight=0.5 (values parsed as JSON, else text)")
    p.add_argument("--generator", type=text, default=None,
                   help="diffusers folder or hub id (default: the shipped model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_grid)

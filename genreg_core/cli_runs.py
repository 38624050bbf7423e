"""The run commands of the ``genreg`` CLI: ``train`` and ``runs list|show|export|delete|stop``."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

from tqdm import tqdm


def _per_class(value: str) -> int | None:
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--per-class takes a positive integer or 'all', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--per-class must be at least 1, got {n}")
    return n


def cmd_train(args: argparse.Namespace) -> int:
    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.methods import METHODS
    from genreg_core.runs import RunSpec, RunStore
    from genreg_core.worker import execute_run

    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r} (known: {', '.join(METHODS)})")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    base = TrainConfig.tiny(args.method) if args.preset == "tiny" else TrainConfig(method=args.method)
    train = dataclasses.replace(base, per_class=args.per_class, epochs=args.epochs, seed=args.seed, init=args.init)
    data = DataConfig(name=args.dataset, root=args.data_root, image_size=args.image_size, split_seed=args.split_seed)
    store = RunStore()
    run_id = store.create_run(RunSpec(train, data, args.generator, args.device))
    bar = tqdm(total=train.epochs, desc=f"train {args.method}", file=sys.stderr, dynamic_ncols=True)

    def on_epoch(epoch: int, metrics: dict) -> None:
        bar.update(1)
        bar.set_postfix(val_loss=f"{metrics['val_loss']:.3f}", val_acc=f"{metrics['val_accuracy']:.3f}")

    try:
        result = execute_run(store, run_id, max_concurrent=args.max_concurrent, on_epoch=on_epoch)
    except FloatingPointError as exc:
        raise ValueError(f"run {run_id} failed: {exc}") from exc
    finally:
        bar.close()
    payload = {"method": args.method, "per_class": args.per_class, "seed": args.seed,
               "best_val_loss": result.best_val_loss if result else None,
               "test_accuracy": result.test_accuracy if result else None,
               "epochs": len(result.history) if result else 0, "run_id": run_id}
    print(json.dumps(payload) if args.json else "\n".join(f"{k:>14}: {v}" for k, v in payload.items()))
    return 0


def _rows(store, run_ids: list[str]) -> list[dict]:
    summaries = [store.summary(r) for r in run_ids] if run_ids else store.list_runs()
    return [s.as_dict() for s in summaries]


def cmd_runs(args: argparse.Namespace) -> int:
    from genreg_core.runs import RunStore

    store = RunStore()
    if args.action == "list":
        rows = _rows(store, [])
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                acc = "—" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
                print(f"{r['run_id']}  {r['status']:<9} {r['method']:<12} per_class={r['per_class']:<4} "
                      f"seed={r['seed']}  epoch {r['epoch']}/{r['epochs']}  test_acc {acc}")
        return 0
    if not args.run_ids and args.action != "export":
        raise ValueError(f"runs {args.action} needs at least one RUN_ID")
    if args.action == "show":
        for run_id in args.run_ids:
            payload = {**store.summary(run_id).as_dict(), "history": store.history(run_id)}
            print(json.dumps(payload, indent=None if args.json else 2))
    elif args.action in ("delete", "stop"):
        for run_id in args.run_ids:
            store.get_run(run_id)
            store.delete_run(run_id) if args.action == "delete" else store.request_stop(run_id)
            print(f"{args.action} {run_id}")
    elif args.action == "export":
        export_runs(store, args.run_ids, Path(args.out))
        print(f"wrote {args.out}")
    return 0


def export_runs(store, run_ids: list[str], out: Path) -> None:
    """Write the run table (``.csv``) or the runs with their per-epoch history (``.json``)."""
    rows = _rows(store, run_ids)
    if out.suffix == ".json":
        out.write_text(json.dumps([{**r, "history": store.history(r["run_id"])} for r in rows], indent=2))
    elif out.suffix == ".csv":
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["run_id"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ValueError(f"--out must end in .csv or .json, got {out.name}")


def add_run_commands(sub, add_data_args) -> None:
    """Register ``train`` and ``runs`` on the CLI's subparsers."""
    p = sub.add_parser("train", help="train a classifier with one method in the foreground, recorded in MLflow")
    add_data_args(p)
    p.add_argument("--method", required=True, help="ce | gda | randreg | adarand | mgr | mgr+adarand")
    p.add_argument("--per-class", type=_per_class, default=10, help="training images per class, or 'all'")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=["scratch", "pretrained"], default="scratch",
                   help="backbone at step 0: random weights, or the self-supervised backbone of the unlabelled "
                        "training split (fine-tuning)")
    p.add_argument("--preset", choices=["default", "tiny"], default="default")
    p.add_argument("--generator", default=None, help="diffusers folder or hub id (default: the shipped model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-concurrent", type=int, default=2, help="runs at once across all genreg processes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list, show, export, stop or delete recorded runs")
    p.add_argument("action", choices=["list", "show", "export", "delete", "stop"])
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--out", default="runs.csv", help="export: a .csv (table) or .json (with histories)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

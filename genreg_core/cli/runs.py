"""The run commands of the ``genreg`` CLI: ``train`` and ``runs list|show|export|delete|stop``."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from genreg_core.cli.args import (
    MAX_CONCURRENT,
    MAX_EPOCHS,
    SEED,
    float_in,
    int_in,
    out_table,
    per_class_or_all,
    text,
    warn_skipped,
)
from genreg_core.cli.common import add_data_args


def check_before_training(train, data, generator: str | None) -> list[dict[str, str]]:
    """Every flag, the data folder's listing and headers, and the generator (loaded and validated), before a run is
    recorded or a progress bar drawn; returns the data entries that will not be read (warned about on stderr)."""
    from genreg_core.data.datasets import dataset_shape, scan_image_folder
    from genreg_core.diffusion.model import load_generator
    from genreg_core.lab import check_shape, generator_location
    from genreg_core.training.loop import check_train_config

    check_train_config(train)
    skipped = scan_image_folder(data.root).skipped if data.name == "imagefolder" and data.root else []
    channels, image_size = dataset_shape(data)
    check_shape(load_generator(generator_location(generator, data.name), dataset=data.name), channels, image_size)
    return warn_skipped(skipped)


def cmd_train(args: argparse.Namespace) -> int:
    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.device import resolve_device
    from genreg_core.distributed import launched_processes, parallel_context
    from genreg_core.runs.store import RunSpec, RunStore
    from genreg_core.runs.worker import execute_run, follow_run
    from genreg_core.training.methods import METHODS

    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r} (known: {', '.join(METHODS)})")
    base = TrainConfig.tiny(args.method) if args.preset == "tiny" else TrainConfig(method=args.method)
    train = dataclasses.replace(base, per_class=args.per_class, epochs=args.epochs, seed=args.seed, init=args.init,
                                generator_regime=args.generator_regime,
                                semantic=dataclasses.replace(base.semantic, perturbation=args.perturbation,
                                                             norm=args.norm, eps=args.eps))
    train = train.mgr_teaching() if args.mgr_teaching else train
    data = DataConfig(name=args.dataset, root=args.data_root, image_size=args.image_size, split_seed=args.split_seed)
    if launched_processes() > 1 and train.generator_regime == "own":
        raise ValueError("--generator-regime own would train its generator in every process at once; under "
                         "accelerate launch use --generator-regime pool, or run the own regime without the launcher")
    skipped = check_before_training(train, data, args.generator)
    parallel = parallel_context(resolve_device(args.device))  # an Accelerator under accelerate launch
    if not parallel.is_main:  # the main process records the run; this one trains its slice of every batch
        follow_run(RunSpec(train, data, args.generator, args.device), parallel)
        return 0
    store = RunStore()
    run_id = store.create_run(RunSpec(train, data, args.generator, args.device))
    store.record_worker(run_id, os.getpid())  # this process is the run's worker: killed from here on, it shows failed
    bar = tqdm(total=train.epochs, desc=f"train {args.method}", file=sys.stderr, dynamic_ncols=True)

    def on_epoch(epoch: int, metrics: dict) -> None:
        bar.update(1)
        bar.set_postfix(val_loss=f"{metrics['val_loss']:.3f}", val_acc=f"{metrics['val_accuracy']:.3f}")

    generator_bar = None

    def on_generator_step(step: int, total: int, metrics: dict) -> None:
        nonlocal generator_bar
        if generator_bar is None:
            generator_bar = tqdm(total=total, desc="own generator", file=sys.stderr, dynamic_ncols=True)
        generator_bar.n = step
        generator_bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
        generator_bar.refresh()

    try:
        result = execute_run(store, run_id, max_concurrent=args.max_concurrent, on_epoch=on_epoch,
                             on_generator_step=on_generator_step, parallel=parallel)
    except (FloatingPointError, OSError) as exc:  # a non-finite loss; the run's folder removed while it ran
        raise ValueError(f"run {run_id} failed: {exc}") from exc
    finally:
        bar.close()
        if generator_bar is not None:
            generator_bar.close()
    payload = {"method": args.method, "per_class": args.per_class, "seed": args.seed, "init": args.init,
               "generator_regime": args.generator_regime,
               "best_val_loss": result.best_val_loss if result else None,
               "test_accuracy": result.test_accuracy if result else None,
               "epochs": len(result.history) if result else 0, "run_id": run_id, "skipped": skipped}
    print(json.dumps(payload) if args.json else "\n".join(f"{k:>14}: {v}" for k, v in payload.items()))
    return 0


def _rows(store, run_ids: list[str]) -> list[dict]:
    summaries = [store.summary(r) for r in run_ids] if run_ids else store.list_runs()
    return [s.as_dict() for s in summaries]


def cmd_runs(args: argparse.Namespace) -> int:
    from genreg_core.runs.store import RunStore

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
        export_runs(store, args.run_ids, args.out)
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


def add_run_commands(sub) -> None:
    """Register ``train`` and ``runs`` on the CLI's subparsers."""
    p = sub.add_parser("train", help="train a classifier with one method in the foreground, recorded in MLflow")
    add_data_args(p)
    p.add_argument("--method", required=True, help="ce | gda | randreg | adarand | mgr | mgr+adarand | semantic | gssl")
    p.add_argument("--perturbation", choices=["rand", "away", "adv"], default="rand",
                   help="semantic: latent perturbation")
    p.add_argument("--norm", choices=["l2", "linf"], default="linf", help="semantic: ball of the perturbation")
    p.add_argument("--eps", type=float_in(0, 10), default=None,
                   help="semantic: radius ε (default: the paper's for the kind)")
    p.add_argument("--per-class", type=per_class_or_all, default=10, help="training images per class, or 'all'")
    p.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=30)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--init", choices=["scratch", "pretrained"], default="scratch",
                   help="backbone at step 0: random weights, or the self-supervised backbone of the unlabelled "
                        "training split (fine-tuning)")
    p.add_argument("--preset", choices=["default", "tiny"], default="default")
    p.add_argument("--generator", type=text, default=None,
                   help="diffusers folder, hub id, or shipped-early (the early checkpoint shipped for fashion-mnist: "
                        "the generator-quality dial); default: the model shipped for the dataset")
    p.add_argument("--generator-regime", choices=["pool", "own"], default="pool",
                   help="pool: the --generator (the shipped one saw the whole labelled train split) | own: a "
                        "generator trained on the run's own per-class images only (cached; minutes on CPU)")
    p.add_argument("--mgr-teaching", action="store_true",
                   help="MGR's teaching setting: 3 finder updates per step at finder lr 3e-2 (the latents move)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-concurrent", type=int_in(1, MAX_CONCURRENT), default=2,
                   help="runs at once across all genreg processes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list, show, export, stop or delete recorded runs")
    p.add_argument("action", choices=["list", "show", "export", "delete", "stop"])
    p.add_argument("run_ids", type=text, nargs="*", metavar="RUN_ID")
    p.add_argument("--out", type=out_table, default="runs.csv", help="export: a .csv (table) or .json (with histories)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

"""``genreg features`` and ``genreg sweep``: real vs synthetic in feature space, and as a function of t."""

from __future__ import annotations

import argparse

from genreg_core.cli.args import (
    MAX_IMAGES,
    MAX_K,
    MAX_PER_CLASS,
    MAX_T,
    int_in,
    text,
    warn_skipped,
)
from genreg_core.cli.common import (
    add_embedding_args,
    add_lab_args,
    open_lab_from_args,
    progress_bar,
    sampler_config,
)


def cmd_features(args: argparse.Namespace) -> int:
    import json

    from genreg_core.analysis.feature_space import FeatureSpaceConfig, compute_feature_space

    if args.source == "reconstruct" and args.t is None:
        raise ValueError("--source reconstruct needs --t")
    if args.source == "folder" and not args.folder:
        raise ValueError("--source folder needs --folder")
    if args.source == "mgr":
        from genreg_core.runs.store import RunStore, StoreError

        if not args.run:
            raise ValueError("--source mgr needs --run")
        try:
            RunStore().get_run(args.run)  # before any work: the id must name a run of the store
        except StoreError:
            raise
        except ValueError as exc:
            raise ValueError(f"--run: {exc}") from exc
    config = FeatureSpaceConfig(source=args.source, per_class=args.n, t=args.t or 0, folder=args.folder,
                                run_id=args.run, k=args.k, seed=args.seed, sampler=sampler_config(args),
                                embedding=args.embedding, reference=args.reference)
    lab = open_lab_from_args(args)
    if args.source == "folder":
        from genreg_core.data.datasets import scan_image_folder

        args.skipped += warn_skipped(scan_image_folder(args.folder).skipped)
    bar = progress_bar(1, f"features ({args.source})")

    def on_progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    result = compute_feature_space(lab, config, on_progress)
    bar.close()
    payload = {**result.metrics.to_json_dict(), "embedding": config.embedding, "reference": config.reference,
               "skipped": args.skipped}
    if args.json:
        print(json.dumps(payload))
    else:
        for key in ("precision", "recall", "density", "coverage", "frechet_distance"):
            print(f"{key:>17}: {payload[key]:.4f}")
        print(f"{'n_real':>17}: {payload['n_real']}  n_synthetic: {payload['n_synthetic']}  k: {payload['k']}")
        holes = "  ".join(f"{lab.dataset.class_names[row['class']]}: {row['uncovered']}/{row['n_real']}"
                          for row in payload["uncovered"])
        print(f"{'uncovered':>17}: {payload['n_uncovered']} real images outside every synthetic k-NN ball ({holes})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import json

    from genreg_core.analysis.reverse_step import SweepConfig, run_sweep

    sampler = sampler_config(args)
    lab = open_lab_from_args(args)
    config = SweepConfig(t_values=tuple(args.t), per_class=-(-args.n // lab.n_classes), seed=args.seed, k=args.k,
                         sampler=sampler, train_accuracy=args.train_accuracy, embedding=args.embedding,
                         reference=args.reference)
    bar = progress_bar(len(config.t_values), "sweep")

    def on_progress(done: int, total: int, message: str) -> None:
        bar.n = done
        bar.set_description(f"sweep: {message}")

    result = run_sweep(lab, config, on_progress)
    bar.close()
    if args.json:
        print(json.dumps(result.rows))
    else:
        keys = [k for k in result.rows[0] if not isinstance(result.rows[0][k], list)]  # per-class lists: --json
        print("  ".join(f"{k[:12]:>12}" for k in keys))
        for row in result.rows:
            print("  ".join(f"{row[k]:>12.4f}" if isinstance(row[k], float) else f"{row[k]:>12}" for k in keys))
    return 0


def add_measure_commands(sub) -> None:
    """Register ``features`` and ``sweep``."""
    p = sub.add_parser("features", help="precision/recall/density/coverage and Fréchet distance, real vs synthetic")
    add_lab_args(p)
    p.add_argument("--source", choices=["generate", "reconstruct", "folder", "mgr"], default="generate",
                   help="generation from noise, reconstruction from --t, an image --folder, or an MGR --run's samples")
    p.add_argument("--run", type=text, default=None, help="run id of an MGR run, for --source mgr")
    p.add_argument("--t", type=int_in(0, MAX_T), default=None, help="start step, for --source reconstruct")
    p.add_argument("--folder", type=text, default=None, help="image folder, for --source folder")
    p.add_argument("--n", type=int_in(1, MAX_PER_CLASS), default=100, help="real and synthetic images per class")
    p.add_argument("--k", type=int_in(1, MAX_K), default=5, help="nearest neighbours of the PRDC radii")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_embedding_args(p, "real reference set for --source reconstruct: the reconstructed originals themselves, "
                           "or as many other training images per class")
    p.set_defaults(func=cmd_features, sampler_steps=25)

    p = sub.add_parser("sweep", help="reconstruct real images from each start step t and measure the drift")
    add_lab_args(p)
    p.add_argument("--t", type=int_in(0, MAX_T), nargs="+", default=list(range(0, 1001, 100)),
                   help="start steps, 0..T")
    p.add_argument("--n", type=int_in(1, MAX_IMAGES), default=200,
                   help="number of real training images (spread over the classes)")
    p.add_argument("--k", type=int_in(1, MAX_K), default=5, help="nearest neighbours of the PRDC radii")
    p.add_argument("--train-accuracy", action="store_true",
                   help="also train a classifier on each reconstructed set and report its test accuracy")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per t")
    add_embedding_args(p, "real set the metrics compare against: the reconstructed originals, or as many other "
                           "training images per class")
    p.set_defaults(func=cmd_sweep, sampler_steps=25)

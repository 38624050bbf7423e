"""``genreg curate``: make synthetic samples, keep the ones the filters accept, export them as an image folder."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from tqdm import tqdm

from genreg_core.cli.args import MAX_K, MAX_PER_CLASS, MAX_T, float_in, int_in, out_folder
from genreg_core.cli.common import add_lab_args, open_lab_from_args, sampler_config


def _classes(text: str) -> int:
    return int_in(0, 100_000)(text)


def cmd_curate(args: argparse.Namespace) -> int:
    from genreg_core.analysis.curation import CurateConfig, CurationFilter, curate, export_folder

    if args.source == "reconstruct" and args.t is None:
        raise ValueError("--source reconstruct needs --t")
    if args.out.exists() and any(args.out.iterdir()):
        raise ValueError(f"--out {args.out} exists and is not an empty folder; give a new folder")
    rules = CurationFilter(keep=args.keep, classes=tuple(sorted(set(args.classes))) if args.classes else None,
                           min_nn_distance=args.min_nn_distance, max_nn_distance=args.max_nn_distance)
    config = CurateConfig(source=args.source, per_class=args.n, seed=args.seed, t=args.t or 0, k=args.k,
                          sampler=sampler_config(args), embedding=args.embedding, rules=rules)
    lab = open_lab_from_args(args)
    unknown = [c for c in rules.classes or () if c >= lab.n_classes]
    if unknown:
        raise ValueError(f"--classes {unknown} are not classes of the dataset (0..{lab.n_classes - 1})")
    bar = tqdm(total=1, desc=f"curate ({args.source})", file=sys.stderr, dynamic_ncols=True)

    def on_progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    candidates, keep, record = curate(lab, config, on_progress)
    bar.close()
    record["command"] = "genreg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    manifest = export_folder(args.out, candidates, keep, record, lab.dataset.class_names)
    summary = {"out": str(args.out), "n_candidates": manifest["n_candidates"], "n_kept": manifest["n_kept"],
               "counts": manifest["counts"], "inside_share": float(candidates.in_manifold.mean()),
               "generator_sha256": manifest["generator"]["sha256"], "filters": manifest["filters"]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"kept {summary['n_kept']} of {summary['n_candidates']} samples; wrote {args.out}/<class>/*.png and "
              f"{args.out}/manifest.json")
    return 0


def add_curate_command(sub) -> None:
    """Register ``genreg curate`` (its lab options are shared with ``sample`` and ``features``)."""
    p = sub.add_parser("curate", help="generate or reconstruct samples, filter them, export ROOT/<class>/*.png "
                                      "with a manifest.json")
    add_lab_args(p)
    p.add_argument("--source", choices=["generate", "reconstruct"], default="generate",
                   help="generation from noise, or reconstruction of real training images from --t")
    p.add_argument("--n", type=int_in(1, MAX_PER_CLASS), required=True, help="candidates per class")
    p.add_argument("--t", type=int_in(0, MAX_T), default=None, help="start step, for --source reconstruct")
    p.add_argument("--k", type=int_in(1, MAX_K), default=5, help="nearest neighbours of the manifold flags")
    p.add_argument("--keep", choices=["inside", "outside", "all"], default="all",
                   help="samples inside the real manifold (a real k-NN ball holds them), outside it, or all")
    p.add_argument("--classes", type=_classes, nargs="+", default=None, help="class indices to keep (default all)")
    p.add_argument("--max-nn-distance", type=float_in(0, 1e12), default=None,
                   help="drop samples whose nearest real training image is farther than this (feature distance)")
    p.add_argument("--min-nn-distance", type=float_in(0, 1e12), default=None,
                   help="drop near-copies: samples whose nearest real training image is closer than this")
    p.add_argument("--embedding", choices=["classifier", "ssl", "random"], default="classifier",
                   help="feature space of the flags and distances")
    p.add_argument("--out", type=out_folder, required=True, help="new (or empty) output folder")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.set_defaults(func=cmd_curate, sampler_steps=25)

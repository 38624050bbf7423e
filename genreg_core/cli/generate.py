"""``genreg sample`` and ``genreg reconstruct``: images from the generator, from noise or from a start step t."""

from __future__ import annotations

import argparse

from genreg_core.cli.args import (
    MAX_IMAGES,
    MAX_PER_CLASS,
    MAX_T,
    int_in,
    out_file,
)
from genreg_core.cli.common import (
    add_lab_args,
    open_lab_from_args,
    progress_bar,
    sampler_config,
    save_npz,
)


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    lab = open_lab_from_args(args)
    bar = progress_bar(1, "sample")

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    images, labels = lab.sample(args.per_class, sampler_config(args), args.seed, on_progress)
    bar.close()
    save_npz(args.out, images=images.numpy().astype(np.float32), labels=labels.numpy().astype(np.int64))
    print(f"wrote {images.shape[0]} samples to {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np

    from genreg_core.diffusion.sampling import reconstruct_many

    lab = open_lab_from_args(args)
    T = lab.generator.num_train_timesteps
    for t in args.t:
        if not 0 <= t <= T:
            raise ValueError(f"--t values must lie in [0, {T}], got {t}")
    train_idx = lab.split.train
    if not 1 <= args.n <= len(train_idx):
        raise ValueError(f"--n must lie in [1, {len(train_idx)}], got {args.n}")
    chosen = np.sort(np.random.default_rng(args.seed).choice(train_idx, size=args.n, replace=False))
    originals, labels = lab.dataset.images[chosen], lab.dataset.labels[chosen]
    bar = progress_bar(len(args.t), "reconstruct")

    def on_progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    recs = reconstruct_many(lab.generator, originals, labels.to(lab.device), args.t, sampler_config(args), args.seed,
                            on_progress)
    bar.close()
    save_npz(args.out, originals=originals.numpy(), labels=labels.numpy().astype(np.int64),
                        t=np.asarray(args.t, dtype=np.int64), reconstructions=recs.numpy(),
                        indices=chosen.astype(np.int64))
    print(f"wrote {len(args.t)} × {args.n} reconstructions to {args.out}")
    return 0


def add_generate_commands(sub) -> None:
    """Register ``sample`` and ``reconstruct``."""
    p = sub.add_parser("sample", help="generate images for every class")
    add_lab_args(p)
    p.add_argument("--per-class", type=int_in(1, MAX_PER_CLASS), required=True)
    p.add_argument("--out", type=out_file, required=True, help="output .npz with images and labels")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="noise real training images to step t and reconstruct them")
    add_lab_args(p)
    p.add_argument("--t", type=int_in(0, MAX_T), nargs="+", required=True, help="start steps, 0..T")
    p.add_argument("--n", type=int_in(1, MAX_IMAGES), required=True, help="number of real training images")
    p.add_argument("--out", type=out_file, required=True, help="output .npz")
    p.set_defaults(func=cmd_reconstruct)

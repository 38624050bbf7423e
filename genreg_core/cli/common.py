"""What the command groups share: data, lab, sampler and acceleration flags, progress bars, .npz output."""

from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from genreg_core.cli.args import (
    IMAGE_SIZE,
    MAX_GUIDANCE,
    MAX_SAMPLER_STEPS,
    SEED,
    float_in,
    int_in,
    text,
    warn_skipped,
)
from genreg_core.config import DataConfig


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits",
                   choices=["digits", "imagefolder", "mnist", "fashion-mnist", "cifar10"])
    p.add_argument("--data-root", type=text, default=None,
                   help="image folder; fashion-mnist: the folder of its four IDX files (e.g. "
                        "/usr/share/datasets/fashion-mnist; default: the shipped subset); "
                        "mnist/cifar10: torchvision root")
    p.add_argument("--image-size", type=IMAGE_SIZE, default=None,
                   help="image side (default 28 for fashion-mnist, else 16)")
    p.add_argument("--split-seed", type=SEED, default=0, help="seed of the train/val/test split")


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--preset", default="default", help="tiny | default | gpu")


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    return DataConfig(name=args.dataset, root=args.data_root, image_size=args.image_size, split_seed=args.split_seed)


def progress_bar(total: int, desc: str, initial: int = 0, disable: bool = False):
    return tqdm(total=total, desc=desc, initial=initial, file=sys.stderr, dynamic_ncols=True, disable=disable)


def save_npz(path, **arrays) -> None:
    """Write exactly ``path`` (numpy would append ``.npz`` to a bare name), whole or not at all: a temporary file
    beside it is renamed into place, and removed when writing fails (a full disk)."""
    import tempfile

    import numpy as np

    fd, tmp = tempfile.mkstemp(prefix=".genreg-", suffix=".npz", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise ValueError(f"cannot write --out {path}: {exc.strerror or exc}") from exc


def open_lab_from_args(args: argparse.Namespace):
    """The lab of the command's data and generator flags; its skipped data entries are warned about on stderr and
    kept in ``args.skipped`` for ``--json``."""
    from genreg_core.lab import open_lab

    lab = open_lab(data_config_from_args(args), args.generator, args.device, precision=args.precision or "auto",
                   compile=args.compile)
    args.skipped = warn_skipped(lab.dataset.skipped)
    return lab


def sampler_config(args: argparse.Namespace):
    from genreg_core.config import SamplerConfig

    return SamplerConfig(method=args.sampler, n_steps=args.sampler_steps, guidance_scale=args.guidance)


def add_lab_args(p: argparse.ArgumentParser) -> None:
    add_data_args(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--generator", type=text, default=None,
                   help="diffusers folder, hub id, or shipped-early (the early checkpoint shipped for fashion-mnist: "
                        "the generator-quality dial); default: the model shipped for the dataset")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--sampler-steps", type=int_in(1, MAX_SAMPLER_STEPS), default=50, help="DDIM steps")
    p.add_argument("--guidance", type=float_in(0, MAX_GUIDANCE), default=0.0, help="classifier-free guidance scale w")
    p.add_argument("--seed", type=SEED, default=0)
    add_acceleration_args(p, "sampling")


def add_acceleration_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help=f"UNet precision for {what} (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"torch.compile the UNet for {what} (default: on CUDA for large jobs, off on CPU)")


def add_embedding_args(p: argparse.ArgumentParser, reference_help: str) -> None:
    p.add_argument("--embedding", choices=["classifier", "ssl", "random"], default="classifier",
                   help="feature space of the metrics: the feature classifier, the self-supervised backbone, or a "
                        "fixed random network (seed 0)")
    p.add_argument("--reference", choices=["same", "disjoint"], default="same", help=reference_help)

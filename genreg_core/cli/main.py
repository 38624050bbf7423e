"""The ``genreg`` command line (also ``python -m genreg_core``)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

import torch
from tqdm import tqdm

from genreg_core.cli.args import (
    IMAGE_SIZE,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_K,
    MAX_PER_CLASS,
    MAX_SAMPLER_STEPS,
    MAX_STEPS,
    MAX_T,
    SEED,
    ArgumentParser,
    float_in,
    int_in,
    out_file,
    out_folder,
    text,
)
from genreg_core.cli.backbone import add_backbone_commands
from genreg_core.cli.runs import add_run_commands
from genreg_core.config import DataConfig, get_preset
from genreg_core.device import resolve_device


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits",
                   choices=["digits", "imagefolder", "mnist", "fashion-mnist", "cifar10"])
    p.add_argument("--data-root", type=text, default=None,
                   help="image folder; fashion-mnist: the folder of its four IDX files (e.g. "
                        "/usr/share/datasets/fashion-mnist; default: the shipped subset); "
                        "mnist/cifar10: torchvision root")
    p.add_argument("--image-size", type=IMAGE_SIZE, default=None,
                   help="image side (default 28 for fashion-mnist, else 16)")
    p.add_argument("--split-seed", type=SEED, default=0, help="seed of the train/val/test split")


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--preset", default="default", help="tiny | default | gpu")


def _data_config(args: argparse.Namespace) -> DataConfig:
    return DataConfig(name=args.dataset, root=args.data_root, image_size=args.image_size, split_seed=args.split_seed)


def _int_tuple(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not 1 <= len(numbers) <= 5 or not all(4 <= n <= 512 for n in numbers):
        raise argparse.ArgumentTypeError(f"expected 1 to 5 channel counts in [4, 512], got {value!r}")
    return numbers


def _bool_tuple(value: str) -> tuple[bool, ...]:
    parts = value.split(",")
    if not all(p in ("0", "1") for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated 0/1 flags, got {value!r}")
    return tuple(p == "1" for p in parts)


def _snapshot(value: str) -> tuple[int, str]:
    step, sep, folder = value.partition(":")
    if not sep or not step.isdigit() or int(step) < 1 or not folder:
        raise argparse.ArgumentTypeError(f"expected STEP:DIR with STEP ≥ 1, got {value!r}")
    return int(step), out_folder(folder)


def _progress(total: int, desc: str, initial: int = 0):
    return tqdm(total=total, desc=desc, initial=initial, file=sys.stderr, dynamic_ncols=True)


def cmd_train_generator(args: argparse.Namespace) -> int:
    from genreg_core.data.datasets import load_dataset, split_dataset
    from genreg_core.diffusion.training import train_generator

    preset = get_preset(args.preset)
    data_config = _data_config(args)
    dataset = load_dataset(data_config)
    split = split_dataset(dataset.labels, data_config.split_seed, data_config.val_fraction, data_config.test_fraction)
    unet_config = preset.unet
    unet_config.sample_size, unet_config.channels = dataset.image_size, dataset.channels
    unet_config.num_classes = None if args.unconditional else dataset.n_classes
    if args.unet_channels is not None:
        unet_config.block_out_channels = args.unet_channels
        unet_config.attention_levels = args.attention_levels or (False,) * (len(args.unet_channels) - 1) + (True,)
    elif args.attention_levels is not None:
        unet_config.attention_levels = args.attention_levels
    if len(unet_config.attention_levels) != len(unet_config.block_out_channels):
        raise ValueError(f"--attention-levels has {len(unet_config.attention_levels)} entries but the UNet has "
                         f"{len(unet_config.block_out_channels)} levels")
    train_config = preset.generator
    if args.lr is not None:
        train_config.lr = args.lr
    if args.steps is not None:
        train_config.steps = args.steps
    if args.batch_size is not None:
        train_config.batch_size = args.batch_size
    train_config.seed = args.seed
    if args.precision is not None:
        train_config.precision = args.precision
    if args.compile is not None:
        train_config.compile = args.compile
    bar = _progress(train_config.steps, "train-generator")

    def on_step(step: int, metrics: dict[str, float]) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
        bar.refresh()

    command = "genreg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train_generator(
        dataset.images[split.train], dataset.labels[split.train], unet_config, train_config, args.out,
        class_names=dataset.class_names, device=resolve_device(args.device), on_step=on_step,
        checkpoint_dir=args.checkpoint_dir,
        extra_metadata={"data_config": vars(data_config), "command": command, "torch": torch.__version__},
        snapshots=dict(args.snapshot or []),
    )
    bar.close()
    print(f"saved generator to {args.out}")
    return 0


def _save_npz(path, **arrays) -> None:
    """Write exactly ``path`` (numpy would append ``.npz`` to a bare name)."""
    import numpy as np

    try:
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    except OSError as exc:
        raise ValueError(f"cannot write --out {path}: {exc.strerror or exc}") from exc


def cmd_train_features(args: argparse.Namespace) -> int:
    from genreg_core.data.datasets import load_dataset, split_dataset
    from genreg_core.features.extractor import accuracy, save_feature_extractor, train_feature_extractor

    config = get_preset(args.preset).features
    if args.epochs is not None:
        config.epochs = args.epochs
    config.seed = args.seed
    data_config = _data_config(args)
    dataset = load_dataset(data_config)
    split = split_dataset(dataset.labels, data_config.split_seed, data_config.val_fraction, data_config.test_fraction)
    bar = _progress(config.epochs, "train-features")

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    extractor = train_feature_extractor(dataset.images[split.train], dataset.labels[split.train], dataset.n_classes,
                                        config, resolve_device(args.device), on_epoch)
    bar.close()
    extractor.model.cpu()
    extractor.test_accuracy = accuracy(extractor, dataset.images[split.test], dataset.labels[split.test])
    save_feature_extractor(extractor, args.out)
    held_out = dataset.held_out
    if held_out is not None:
        print(f"held-out test accuracy {accuracy(extractor, held_out.images, held_out.labels):.4f} "
              f"({len(held_out):,} images of {held_out.name})")
    print(f"test accuracy {extractor.test_accuracy:.4f}; saved feature extractor to {args.out}")
    return 0


def _open_lab(args: argparse.Namespace):
    from genreg_core.lab import open_lab

    return open_lab(_data_config(args), args.generator, args.device, precision=args.precision or "auto",
                    compile=args.compile)


def _sampler_config(args: argparse.Namespace):
    from genreg_core.config import SamplerConfig

    return SamplerConfig(method=args.sampler, n_steps=args.sampler_steps, guidance_scale=args.guidance)


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    lab = _open_lab(args)
    bar = _progress(1, "sample")

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    images, labels = lab.sample(args.per_class, _sampler_config(args), args.seed, on_progress)
    bar.close()
    _save_npz(args.out, images=images.numpy().astype(np.float32), labels=labels.numpy().astype(np.int64))
    print(f"wrote {images.shape[0]} samples to {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np

    from genreg_core.diffusion.sampling import reconstruct_many

    lab = _open_lab(args)
    T = lab.generator.num_train_timesteps
    for t in args.t:
        if not 0 <= t <= T:
            raise ValueError(f"--t values must lie in [0, {T}], got {t}")
    train_idx = lab.split.train
    if not 1 <= args.n <= len(train_idx):
        raise ValueError(f"--n must lie in [1, {len(train_idx)}], got {args.n}")
    chosen = np.sort(np.random.default_rng(args.seed).choice(train_idx, size=args.n, replace=False))
    originals, labels = lab.dataset.images[chosen], lab.dataset.labels[chosen]
    bar = _progress(len(args.t), "reconstruct")

    def on_progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    recs = reconstruct_many(lab.generator, originals, labels.to(lab.device), args.t, _sampler_config(args), args.seed,
                            on_progress)
    bar.close()
    _save_npz(args.out, originals=originals.numpy(), labels=labels.numpy().astype(np.int64),
                        t=np.asarray(args.t, dtype=np.int64), reconstructions=recs.numpy(),
                        indices=chosen.astype(np.int64))
    print(f"wrote {len(args.t)} × {args.n} reconstructions to {args.out}")
    return 0


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
                                run_id=args.run, k=args.k, seed=args.seed, sampler=_sampler_config(args),
                                embedding=args.embedding, reference=args.reference)
    lab = _open_lab(args)
    bar = _progress(1, f"features ({args.source})")

    def on_progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    result = compute_feature_space(lab, config, on_progress)
    bar.close()
    payload = {**result.metrics.to_json_dict(), "embedding": config.embedding, "reference": config.reference}
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

    sampler = _sampler_config(args)
    lab = _open_lab(args)
    config = SweepConfig(t_values=tuple(args.t), per_class=-(-args.n // lab.n_classes), seed=args.seed, k=args.k,
                         sampler=sampler, train_accuracy=args.train_accuracy, embedding=args.embedding,
                         reference=args.reference)
    bar = _progress(len(config.t_values), "sweep")

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


def _add_embedding_args(p: argparse.ArgumentParser, reference_help: str) -> None:
    p.add_argument("--embedding", choices=["classifier", "ssl", "random"], default="classifier",
                   help="feature space of the metrics: the feature classifier, the self-supervised backbone, or a "
                        "fixed random network (seed 0)")
    p.add_argument("--reference", choices=["same", "disjoint"], default="same", help=reference_help)


def _add_lab_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--generator", type=text, default=None,
                   help="diffusers folder, hub id, or shipped-early (the early checkpoint shipped for fashion-mnist: "
                        "the generator-quality dial); default: the model shipped for the dataset")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--sampler-steps", type=int_in(1, MAX_SAMPLER_STEPS), default=50, help="DDIM steps")
    p.add_argument("--guidance", type=float_in(0, MAX_GUIDANCE), default=0.0, help="classifier-free guidance scale w")
    p.add_argument("--seed", type=SEED, default=0)
    _add_acceleration_args(p, "sampling")


def _add_acceleration_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help=f"UNet precision for {what} (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"torch.compile the UNet for {what} (default: on CUDA for large jobs, off on CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="genreg", description="genreg: a lab for generative data augmentation and "
                                     "feature regularization (also: python -m genreg_core).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-generator", help="train the class-conditional diffusion model")
    _add_data_args(p)
    _add_common_args(p)
    p.add_argument("--steps", type=int_in(1, MAX_STEPS), default=None,
                   help="optimizer steps (preset default if omitted)")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=None)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--unconditional", action="store_true", help="train without class conditioning")
    p.add_argument("--out", type=out_folder, required=True, help="output folder (diffusers DDPMPipeline format)")
    p.add_argument("--unet-channels", type=_int_tuple, default=None,
                   help="UNet channels per level, e.g. 16,32,64 (default: the preset's)")
    p.add_argument("--attention-levels", type=_bool_tuple, default=None,
                   help="self-attention per level as 0/1, e.g. 0,0,1 (default: the preset's; with "
                        "--unet-channels, the last level only)")
    p.add_argument("--lr", type=float_in(1e-6, 1.0), default=None, help="AdamW peak learning rate")
    p.add_argument("--snapshot", type=_snapshot, action="append", metavar="STEP:DIR",
                   help="also save the EMA weights after STEP to DIR (an early generator; repeatable)")
    p.add_argument("--checkpoint-dir", type=out_folder, default=None,
                   help="resumable checkpoints (default OUT/checkpoint)")
    _add_acceleration_args(p, "training")
    p.set_defaults(func=cmd_train_generator)

    p = sub.add_parser("train-features", help="train the feature extractor on the real training split")
    _add_data_args(p)
    _add_common_args(p)
    p.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=None)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", type=out_folder, required=True, help="output folder (safetensors + config.json)")
    p.set_defaults(func=cmd_train_features)

    p = sub.add_parser("sample", help="generate images for every class")
    _add_lab_args(p)
    p.add_argument("--per-class", type=int_in(1, MAX_PER_CLASS), required=True)
    p.add_argument("--out", type=out_file, required=True, help="output .npz with images and labels")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="noise real training images to step t and reconstruct them")
    _add_lab_args(p)
    p.add_argument("--t", type=int_in(0, MAX_T), nargs="+", required=True, help="start steps, 0..T")
    p.add_argument("--n", type=int_in(1, MAX_IMAGES), required=True, help="number of real training images")
    p.add_argument("--out", type=out_file, required=True, help="output .npz")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("features", help="precision/recall/density/coverage and Fréchet distance, real vs synthetic")
    _add_lab_args(p)
    p.add_argument("--source", choices=["generate", "reconstruct", "folder", "mgr"], default="generate",
                   help="generation from noise, reconstruction from --t, an image --folder, or an MGR --run's samples")
    p.add_argument("--run", type=text, default=None, help="run id of an MGR run, for --source mgr")
    p.add_argument("--t", type=int_in(0, MAX_T), default=None, help="start step, for --source reconstruct")
    p.add_argument("--folder", type=text, default=None, help="image folder, for --source folder")
    p.add_argument("--n", type=int_in(1, MAX_PER_CLASS), default=100, help="real and synthetic images per class")
    p.add_argument("--k", type=int_in(1, MAX_K), default=5, help="nearest neighbours of the PRDC radii")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_embedding_args(p, "real reference set for --source reconstruct: the reconstructed originals themselves, "
                           "or as many other training images per class")
    p.set_defaults(func=cmd_features, sampler_steps=25)

    p = sub.add_parser("sweep", help="reconstruct real images from each start step t and measure the drift")
    _add_lab_args(p)
    p.add_argument("--t", type=int_in(0, MAX_T), nargs="+", default=list(range(0, 1001, 100)),
                   help="start steps, 0..T")
    p.add_argument("--n", type=int_in(1, MAX_IMAGES), default=200,
                   help="number of real training images (spread over the classes)")
    p.add_argument("--k", type=int_in(1, MAX_K), default=5, help="nearest neighbours of the PRDC radii")
    p.add_argument("--train-accuracy", action="store_true",
                   help="also train a classifier on each reconstructed set and report its test accuracy")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per t")
    _add_embedding_args(p, "real set the metrics compare against: the reconstructed originals, or as many other "
                           "training images per class")
    p.set_defaults(func=cmd_sweep, sampler_steps=25)
    add_run_commands(sub, _add_data_args)
    add_backbone_commands(sub, _add_data_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad value or an expected failure prints one line and returns 2."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # it logs a traceback for a locked store
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its one-line error (or the help)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"genreg: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2

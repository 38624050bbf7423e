"""``genreg train-generator``, ``train-features`` and ``pretrain-backbone``: (re)train the lab's models."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import torch

from genreg_core.cli.args import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_STEPS,
    SEED,
    float_in,
    int_in,
    out_folder,
    warn_skipped,
)
from genreg_core.cli.common import (
    add_acceleration_args,
    add_common_args,
    add_data_args,
    data_config_from_args,
    progress_bar,
)
from genreg_core.config import get_preset
from genreg_core.device import resolve_device


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


def cmd_train_generator(args: argparse.Namespace) -> int:
    from genreg_core.data.datasets import load_dataset, split_dataset
    from genreg_core.diffusion.training import train_generator
    from genreg_core.distributed import parallel_context

    preset = get_preset(args.preset)
    data_config = data_config_from_args(args)
    dataset = load_dataset(data_config)
    warn_skipped(dataset.skipped)
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
    device = resolve_device(args.device)
    parallel = parallel_context(device)  # an Accelerator under accelerate launch, else the plain path
    bar = progress_bar(train_config.steps, "train-generator", disable=not parallel.is_main)

    def on_step(step: int, metrics: dict[str, float]) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
        bar.refresh()

    command = "genreg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train_generator(
        dataset.images[split.train], dataset.labels[split.train], unet_config, train_config, args.out,
        class_names=dataset.class_names, device=device, on_step=on_step,
        checkpoint_dir=args.checkpoint_dir,
        extra_metadata={"data_config": vars(data_config), "command": command, "torch": torch.__version__,
                        "processes": parallel.num_processes},
        snapshots=dict(args.snapshot or []), parallel=parallel,
    )
    bar.close()
    if parallel.is_main:
        print(f"saved generator to {args.out}")
    return 0


def cmd_train_features(args: argparse.Namespace) -> int:
    from genreg_core.data.datasets import load_dataset, split_dataset
    from genreg_core.features.extractor import accuracy, save_feature_extractor, train_feature_extractor

    config = get_preset(args.preset).features
    if args.epochs is not None:
        config.epochs = args.epochs
    config.seed = args.seed
    data_config = data_config_from_args(args)
    dataset = load_dataset(data_config)
    warn_skipped(dataset.skipped)
    split = split_dataset(dataset.labels, data_config.split_seed, data_config.val_fraction, data_config.test_fraction)
    bar = progress_bar(config.epochs, "train-features")

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


def cmd_pretrain_backbone(args: argparse.Namespace) -> int:
    from genreg_core.config import BackboneConfig, FeatureConfig
    from genreg_core.data.datasets import load_dataset, split_dataset
    from genreg_core.device import resolve_device
    from genreg_core.features.backbone import pretrain_backbone, probe_accuracy, save_backbone
    from genreg_core.features.extractor import build_convnet

    config = BackboneConfig(epochs=args.epochs, seed=args.seed)
    data_config = data_config_from_args(args)
    dataset = load_dataset(data_config)
    warn_skipped(dataset.skipped)
    split = split_dataset(dataset.labels, data_config.split_seed, data_config.val_fraction, data_config.test_fraction)
    pool = dataset.images[split.train]
    bar = progress_bar(config.epochs, "pretrain-backbone")

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(nt_xent=f"{metrics['loss']:.4f}")

    model = pretrain_backbone(pool, config, resolve_device(args.device), on_epoch).cpu()
    bar.close()
    torch.manual_seed(config.seed)
    random_net = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), dataset.channels, 1)
    probes = {"pretrained": probe_accuracy(model, dataset, split), "random_init": probe_accuracy(random_net.eval(),
                                                                                                 dataset, split)}
    provenance = {
        "data": f"{dataset.name} {dataset.image_size}×{dataset.image_size}: the training split (split seed "
                f"{data_config.split_seed}, {len(split.train)} images), labels unused; val and test never seen",
        "data_config": vars(data_config), "epochs": config.epochs, "seed": config.seed,
        "command": "genreg " + " ".join(shlex.quote(a) for a in sys.argv[1:]), "torch": torch.__version__,
        "probe_10_per_class_test_accuracy": probes,
    }
    save_backbone(model, config, pool, args.out, provenance)
    print(json.dumps(probes))
    print(f"saved backbone to {args.out}")
    return 0


def add_model_commands(sub) -> None:
    """Register ``train-generator``, ``train-features`` and ``pretrain-backbone``."""
    p = sub.add_parser("train-generator", help="train the class-conditional diffusion model")
    add_data_args(p)
    add_common_args(p)
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
    add_acceleration_args(p, "training")
    p.set_defaults(func=cmd_train_generator)

    p = sub.add_parser("train-features", help="train the feature extractor on the real training split")
    add_data_args(p)
    add_common_args(p)
    p.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=None)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", type=out_folder, required=True, help="output folder (safetensors + config.json)")
    p.set_defaults(func=cmd_train_features)

    p = sub.add_parser("pretrain-backbone", help="self-supervised (SimCLR) backbone on the unlabelled training split")
    add_data_args(p)
    p.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=60)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", type=out_folder, required=True, help="output folder (backbone.safetensors + backbone.json)")
    p.set_defaults(func=cmd_pretrain_backbone)

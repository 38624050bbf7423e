"""``genreg pretrain-backbone``: the self-supervised backbone that ``genreg train --init pretrained`` fine-tunes."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import torch
from tqdm import tqdm

from genreg_core.cli.args import MAX_EPOCHS, SEED, int_in, out_folder, warn_skipped


def cmd_pretrain_backbone(args: argparse.Namespace) -> int:
    from genreg_core.config import BackboneConfig, DataConfig, FeatureConfig
    from genreg_core.data.datasets import load_dataset, split_dataset
    from genreg_core.device import resolve_device
    from genreg_core.features.backbone import pretrain_backbone, probe_accuracy, save_backbone
    from genreg_core.features.extractor import build_convnet

    config = BackboneConfig(epochs=args.epochs, seed=args.seed)
    data_config = DataConfig(name=args.dataset, root=args.data_root, image_size=args.image_size,
                             split_seed=args.split_seed)
    dataset = load_dataset(data_config)
    warn_skipped(dataset.skipped)
    split = split_dataset(dataset.labels, data_config.split_seed, data_config.val_fraction, data_config.test_fraction)
    pool = dataset.images[split.train]
    bar = tqdm(total=config.epochs, desc="pretrain-backbone", file=sys.stderr, dynamic_ncols=True)

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


def add_backbone_commands(sub, add_data_args) -> None:
    """Register ``pretrain-backbone`` on the CLI's subparsers."""
    p = sub.add_parser("pretrain-backbone", help="self-supervised (SimCLR) backbone on the unlabelled training split")
    add_data_args(p)
    p.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=60)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", type=out_folder, required=True, help="output folder (backbone.safetensors + backbone.json)")
    p.set_defaults(func=cmd_pretrain_backbone)

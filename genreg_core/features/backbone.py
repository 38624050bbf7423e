"""A self-supervised backbone for fine-tuning: SimCLR on the unlabelled training pool.

"A Simple Framework for Contrastive Learning of Visual Representations" (Chen et al., ICML 2020): two
random views of each image (``augment.random_view``) go through the classifier's backbone ``g`` and a
2-layer projection head ``p``; the NT-Xent loss pulls the two views of an image together and pushes the
other 2N − 2 views away:

    ℓ(i, j) = −log( exp(s_ij / τ) / Σ_{k≠i} exp(s_ik / τ) ),   s = cosine similarity of p(g(·)).

No label is read, so the backbone carries no label information beyond the N-per-class subset a
classifier later fine-tunes on. ``g`` has the classifier's architecture (``features.ConvNet.backbone``)
and loads into it directly. The shipped digits backbone lives in ``assets/digits-ssl`` (safetensors +
``backbone.json`` with its provenance); any other pool trains one on demand and caches it on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genreg_core.config import BackboneConfig, FeatureConfig, config_from_dict
from genreg_core.data.datasets import ImageDataset, Split
from genreg_core.features.augment import random_view
from genreg_core.features.extractor import ConvNet, build_convnet, data_fingerprint

DEFAULT_BACKBONE_DIR = Path(__file__).parents[1] / "assets" / "digits-ssl"
SHIPPED_BACKBONES = {"digits": DEFAULT_BACKBONE_DIR,
                     "fashion-mnist": Path(__file__).parents[1] / "assets" / "fashion-mnist-ssl"}
WEIGHTS_FILE = "backbone.safetensors"
META_FILE = "backbone.json"


@dataclass
class Backbone:
    """The weights of ``ConvNet.backbone`` (BatchNorm buffers included) and where they came from."""

    state_dict: dict[str, torch.Tensor]  # keys of ConvNet.backbone, on CPU
    config: BackboneConfig
    channels: int
    image_size: int
    provenance: dict  # data used, objective, epochs, seed, command, pool fingerprint, probe accuracies


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two views ``z1``, ``z2`` (N, p), averaged over the 2N anchors."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, p)
    sim = z @ z.T / temperature  # (2N, 2N)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # the other view of each anchor
    return F.cross_entropy(sim, target)


def _projection_head(config: BackboneConfig) -> nn.Module:
    d = config.feature_dim
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, config.projection_dim))


def pretrain_backbone(pool: torch.Tensor, config: BackboneConfig, device: torch.device | str = "cpu",
                      on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> ConvNet:
    """SimCLR on the unlabelled images ``pool`` (N, C, H, W); returns the ConvNet whose backbone was trained.

    Adam with a one-cycle schedule; the last incomplete batch is dropped (NT-Xent needs negatives).
    """
    if pool.shape[0] < 2:
        raise ValueError(f"self-supervised pretraining needs at least 2 images, got {pool.shape[0]}")
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), pool.shape[1], 1)
    model.to(device).train()
    head = _projection_head(config).to(device).train()
    params = list(model.backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, pool.shape[0])
    steps_per_epoch = pool.shape[0] // batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch)
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(pool.shape[0], generator=rng)
        total = 0.0
        for step in range(steps_per_epoch):
            x = pool[order[step * batch:(step + 1) * batch]]  # (B, C, H, W)
            views = torch.cat([random_view(x, rng), random_view(x, rng)]).to(device)  # (2B, C, H, W)
            z = head(model.features(views))  # (2B, p)
            loss = nt_xent(z[:batch], z[batch:], config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        if on_epoch is not None:
            on_epoch(epoch, {"loss": total / steps_per_epoch})
    return model.eval()


def save_backbone(model: ConvNet, config: BackboneConfig, pool: torch.Tensor, out_dir: str | Path,
                  provenance: dict) -> Path:
    """Write ``backbone.safetensors`` (the ``ConvNet.backbone`` state) and ``backbone.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.backbone.state_dict().items()}
    save_file(state, out_dir / WEIGHTS_FILE)
    meta = {"config": asdict(config), "channels": int(pool.shape[1]), "image_size": int(pool.shape[-1]),
            "objective": "SimCLR NT-Xent (Chen et al. 2020), no labels",
            "pool_fingerprint": data_fingerprint(pool), "n_pool": int(pool.shape[0]), **provenance}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def load_backbone(folder: str | Path | None = None) -> Backbone:
    """Load a saved backbone (safetensors only); a missing or corrupt file raises ``ValueError``."""
    folder = Path(folder) if folder is not None else DEFAULT_BACKBONE_DIR
    try:
        meta = json.loads((folder / META_FILE).read_text())
        state = load_file(folder / WEIGHTS_FILE)
        config = config_from_dict(BackboneConfig, meta["config"])
    except Exception as exc:
        raise ValueError(f"cannot load backbone from {folder}: {exc}") from exc
    return Backbone(state, config, meta["channels"], meta["image_size"], meta)


def load_into(model: ConvNet, backbone: Backbone) -> ConvNet:
    """Copy the backbone's weights into ``model.backbone`` (the head stays as it is)."""
    try:
        model.backbone.load_state_dict(backbone.state_dict)
    except RuntimeError as exc:
        raise ValueError(f"the pretrained backbone does not fit this classifier: {exc}") from exc
    return model


def get_backbone(dataset: ImageDataset, split: Split, width: int, feature_dim: int, cache_dir: str | Path,
                 config: BackboneConfig | None = None, device: torch.device | str = "cpu",
                 on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> Backbone:
    """The self-supervised backbone of this split's unlabelled training pool, for a ConvNet of ``width`` / ``d``.

    A shipped backbone (digits', Fashion-MNIST's) when its pool fingerprint and architecture match; otherwise one
    from the
    disk cache, or pretrained once (``config``, default ``BackboneConfig``) and cached.
    """
    pool = dataset.images[split.train]
    fingerprint = data_fingerprint(pool)
    config = config or BackboneConfig()
    config = BackboneConfig(**{**asdict(config), "width": width, "feature_dim": feature_dim})
    for shipped_dir in SHIPPED_BACKBONES.values():
        if not (shipped_dir / META_FILE).exists():
            continue
        shipped = load_backbone(shipped_dir)
        if (shipped.provenance.get("pool_fingerprint") == fingerprint and shipped.config.width == width
                and shipped.config.feature_dim == feature_dim):
            return shipped
    key = fingerprint + "-" + hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    folder = Path(cache_dir) / key
    if (folder / WEIGHTS_FILE).exists():
        try:
            return load_backbone(folder)
        except ValueError:
            pass  # a corrupt cache entry is retrained and overwritten below
    model = pretrain_backbone(pool, config, device, on_epoch)
    save_backbone(model, config, pool, folder, {"data": f"{dataset.name}: the split's training pool, labels unused",
                                                "command": "trained on demand by get_backbone"})
    return load_backbone(folder)


def probe_accuracy(model: ConvNet, dataset: ImageDataset, split: Split, per_class: int = 10,
                   seed: int = 0) -> dict[str, float]:
    """How useful ``g`` is with few labels: test accuracy of 1-NN (cosine) and of a logistic-regression
    probe on the eval-mode features of ``per_class`` labelled training images per class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from genreg_core.data.datasets import per_class_subset
    from genreg_core.features.extractor import extract_features

    train = per_class_subset(dataset.labels, split.train, per_class, seed)
    f_train = extract_features(model, dataset.images[train])  # (n, d)
    f_test = extract_features(model, dataset.images[split.test])  # (m, d)
    y_train, y_test = dataset.labels[train].numpy(), dataset.labels[split.test].numpy()
    unit_train = f_train / (np.linalg.norm(f_train, axis=1, keepdims=True) + 1e-12)
    unit_test = f_test / (np.linalg.norm(f_test, axis=1, keepdims=True) + 1e-12)
    knn = float((y_train[(unit_test @ unit_train.T).argmax(1)] == y_test).mean())
    scaler = StandardScaler().fit(f_train)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(f_train), y_train)
    linear = float((probe.predict(scaler.transform(f_test)) == y_test).mean())
    return {"knn_1": knn, "linear_probe": linear}

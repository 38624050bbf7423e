"""The feature extractor: a small CNN classifier ``f(x) = h(g(x))`` whose pooled penultimate feature
``g(x) ∈ R^d`` is "the feature" of every page (metrics, projections, regularizers).

Shipped weights for the digits default live in ``assets/digits-features`` (safetensors + JSON);
any other dataset trains one in seconds and caches it on disk, keyed by the data and the config.
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

from genreg_core.config import FeatureConfig, config_from_dict
from genreg_core.features.augment import random_shift_rotate

DEFAULT_FEATURES_DIR = Path(__file__).parents[1] / "assets" / "digits-features"
SHIPPED_FEATURES = {"digits": DEFAULT_FEATURES_DIR,
                    "fashion-mnist": Path(__file__).parents[1] / "assets" / "fashion-mnist-features"}
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """``g``: four 3×3 conv blocks (two with stride 2) and global average pooling to ``d``; ``h``: linear."""

    def __init__(self, channels: int = 1, n_classes: int = 10, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.backbone = nn.Sequential(
            _conv_block(channels, width, 1),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 4 * width, 2),
            _conv_block(4 * width, feature_dim, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x)``: (N, C, H, W) -> (N, d)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass
class FeatureExtractor:
    """A trained ConvNet in eval mode with the facts needed to rebuild it."""

    model: ConvNet
    config: FeatureConfig
    n_classes: int
    channels: int
    image_size: int
    test_accuracy: float | None = None

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim


def build_convnet(config: FeatureConfig, channels: int, n_classes: int) -> ConvNet:
    """A fresh ConvNet for ``config``."""
    return ConvNet(channels, n_classes, config.width, config.feature_dim)


def _iterate(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def extract_features(extractor: FeatureExtractor | ConvNet, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Penultimate features ``g(x)`` of ``images`` (N, C, H, W) as a float32 array (N, d)."""
    model = extractor.model if isinstance(extractor, FeatureExtractor) else extractor
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for sl in _iterate(images.shape[0], batch_size):
            out.append(model.features(images[sl].to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.head.in_features), np.float32)


def predict_labels(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Class predicted by the feature classifier for each image, (N,) int64."""
    model = extractor.model
    device = next(model.parameters()).device
    model.eval()
    preds = []
    with torch.inference_mode():
        for sl in _iterate(images.shape[0], batch_size):
            preds.append(model(images[sl].to(device)).argmax(1).cpu())
    return torch.cat(preds).numpy().astype(np.int64)


def accuracy(extractor: FeatureExtractor, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of the feature classifier."""
    return float((predict_labels(extractor, images) == labels.numpy()).mean())


def train_feature_extractor(images: torch.Tensor, labels: torch.Tensor, n_classes: int, config: FeatureConfig,
                            device: torch.device | str = "cpu",
                            on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> FeatureExtractor:
    """Train the ConvNet with cross-entropy (Adam, cosine schedule, optional shift/rotate augmentation)."""
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    model = build_convnet(config, images.shape[1], n_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, (images.shape[0] + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(images.shape[0], generator=rng)
        total = 0.0
        for sl in _iterate(images.shape[0], config.batch_size):
            x, y = images[order[sl]], labels[order[sl]]
            if config.augment:
                x = random_shift_rotate(x, rng=rng)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * x.shape[0]
        if on_epoch is not None:
            on_epoch(epoch + 1, {"loss": total / images.shape[0]})
    model.eval()
    return FeatureExtractor(model, config, n_classes, images.shape[1], images.shape[-1])


def save_feature_extractor(extractor: FeatureExtractor, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in extractor.model.state_dict().items()}
    save_file(state, out_dir / WEIGHTS_FILE)
    meta = {"config": asdict(extractor.config), "n_classes": extractor.n_classes, "channels": extractor.channels,
            "image_size": extractor.image_size, "test_accuracy": extractor.test_accuracy}
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def load_feature_extractor(folder: str | Path | None = None, device: torch.device | str = "cpu") -> FeatureExtractor:
    """Load a saved extractor (safetensors only); a corrupt or missing file raises ``ValueError``."""
    folder = Path(folder) if folder is not None else DEFAULT_FEATURES_DIR
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        config = config_from_dict(FeatureConfig, meta["config"])
        model = build_convnet(config, meta["channels"], meta["n_classes"])
        model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    except Exception as exc:
        raise ValueError(f"cannot load feature extractor from {folder}: {exc}") from exc
    model.eval().requires_grad_(False).to(device)
    return FeatureExtractor(model, config, meta["n_classes"], meta["channels"], meta["image_size"],
                            meta.get("test_accuracy"))


def data_fingerprint(*arrays: torch.Tensor | np.ndarray) -> str:
    """A short content hash of tensors, used as a cache key."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array.numpy() if isinstance(array, torch.Tensor) else array)
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def get_feature_extractor(train_images: torch.Tensor, train_labels: torch.Tensor, n_classes: int,
                          config: FeatureConfig, cache_dir: str | Path, device: torch.device | str = "cpu",
                          on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                          test: tuple[torch.Tensor, torch.Tensor] | None = None) -> FeatureExtractor:
    """The extractor for this training data and config: from the disk cache, or trained once and cached."""
    key = data_fingerprint(train_images, train_labels) + "-" + hashlib.sha256(
        json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    folder = Path(cache_dir) / key
    if (folder / WEIGHTS_FILE).exists():
        try:
            return load_feature_extractor(folder, device)
        except ValueError:
            pass  # a corrupt cache entry is retrained and overwritten below
    extractor = train_feature_extractor(train_images, train_labels, n_classes, config, device, on_epoch)
    if test is not None:
        extractor.test_accuracy = accuracy(extractor, *test)
    save_feature_extractor(extractor, folder)
    return extractor

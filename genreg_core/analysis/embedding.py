"""Which network embeds images for the distribution metrics: the feature classifier, the SSL backbone, or a
fixed random network.

The feature classifier (``Lab.extractor``, 99 % accurate on digits) is trained to squeeze each class onto
a tight cluster, so k-NN balls are wide and a set that lost its within-class variety still "covers" the
real one. A self-supervised backbone (``genreg_core.features.backbone``, no labels) keeps within-class variation,
and a fixed random CNN is the label-free embedding Naeem et al. (2020, §5) found sound for PRDC. Both let
mode collapse show where the classifier hides it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from genreg_core.config import FeatureConfig
from genreg_core.features.backbone import get_backbone, load_into
from genreg_core.features.extractor import ConvNet, build_convnet, extract_features
from genreg_core.lab import Lab
from genreg_core.paths import genreg_home

EmbeddingName = Literal["classifier", "ssl", "random"]
EMBEDDINGS: tuple[str, ...] = ("classifier", "ssl", "random")
RANDOM_EMBEDDING_SEED = 0  # the fixed random network's weights
EMBEDDING_NAMES = {"classifier": "feature classifier", "ssl": "self-supervised backbone",
                   "random": "fixed random network"}
EMBEDDING_HELP = ("The network whose features every metric uses. The feature classifier squeezes each class "
                  "together, which can hide lost diversity; the self-supervised backbone (trained without labels) "
                  "and a fixed random network (seed 0) keep within-class variation.")


def random_network(channels: int, config: FeatureConfig | None = None, seed: int = RANDOM_EMBEDDING_SEED) -> ConvNet:
    """The ConvNet with weights drawn from ``seed`` (PyTorch's default init), in eval mode; torch's global RNG
    is left as it was."""
    config = config or FeatureConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_convnet(config, channels, 1)
    return model.eval().requires_grad_(False)


def calibrate_batchnorm(model: ConvNet, images: torch.Tensor, batch_size: int = 512) -> ConvNet:
    """Set every BatchNorm's running mean / variance to its exact average over ``images`` (N, C, H, W), weights
    untouched, so a random network's features keep unit scale layer after layer; returns the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    device = next(model.parameters()).device
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            model.features(images[start:start + batch_size].to(device))
    return model.eval()


def embedding_network(lab: Lab, name: str) -> ConvNet:
    """The network behind embedding ``name`` for this lab, on the lab's device (built once per lab)."""
    if name not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {name!r} (known: {', '.join(EMBEDDINGS)})")
    if name == "classifier":
        return lab.extractor.model
    cache = lab._embedding_cache.setdefault("networks", {})
    if name not in cache:
        config = lab.extractor.config
        if name == "random":  # BatchNorm calibrated on the training split (no labels), weights as drawn
            model = calibrate_batchnorm(random_network(lab.dataset.channels, config).to(lab.device),
                                        lab.dataset.images[lab.split.train])
        else:
            backbone = get_backbone(lab.dataset, lab.split, config.width, config.feature_dim,
                                    genreg_home() / "cache" / "backbones", device=lab.device)
            model = load_into(random_network(lab.dataset.channels, config), backbone).eval()
        cache[name] = model.to(lab.device)
    return cache[name]


def embed(lab: Lab, images: torch.Tensor, name: str = "classifier") -> np.ndarray:
    """Features (N, d) of ``images`` (N, C, H, W) in embedding ``name`` (eval mode)."""
    return extract_features(embedding_network(lab, name), images)


def train_embedding(lab: Lab, name: str = "classifier") -> np.ndarray:
    """Features (N_train, d) of the real training split in embedding ``name``, computed once per lab."""
    if name == "classifier":
        return lab.train_features()
    cache = lab._embedding_cache.setdefault("train", {})
    if name not in cache:
        cache[name] = embed(lab, lab.dataset.images[lab.split.train], name)
    return cache[name]

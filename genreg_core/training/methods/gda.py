"""GDA: naive generative data augmentation (docs/algorithms.md §3).

Synthetic pairs ``(G(z, c), c)`` join every real batch at ratio ρ and are trained on with the same
cross-entropy. "Regularizing Neural Networks with Meta-Learning Generative Models" (Yamaguchi et al.,
NeurIPS 2023) shows that this can *lower* accuracy; nothing here is tuned to hide that.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from genreg_core.config import GDAOptions, SamplerConfig, TrainConfig
from genreg_core.data.datasets import load_image_folder
from genreg_core.diffusion.sampling import class_labels, sample_images
from genreg_core.features.augment import random_shift_rotate
from genreg_core.features.extractor import ConvNet
from genreg_core.training.methods.base import Method, MethodSetup, Metrics, feature_diagnostics


class GenerativeAugmentation(Method):
    """``L = CE`` over the real batch joined by ``round(ρ·B)`` pairs drawn from a pool generated once."""

    name = "gda"
    note = "naive generative augmentation: synthetic pairs inside the CE loss"
    needs_generator = True

    def __init__(self, options: GDAOptions | None = None, augment: bool = True):
        o = options or GDAOptions()
        if o.ratio < 0:
            raise ValueError(f"GDA ratio must be non-negative, got {o.ratio}")
        if o.pool_per_class < 1 or o.sampler_steps < 1:
            raise ValueError("GDA needs at least one pool image per class and one sampler step")
        self.ratio = o.ratio
        self.pool_per_class = o.pool_per_class
        self.sampler_steps = o.sampler_steps
        self.augment = augment  # T(·) on synthetic images too, like on real ones
        self.pool_folder = o.pool_folder  # a curated export used as the pool instead of generating one

    @classmethod
    def from_config(cls, config: TrainConfig) -> GenerativeAugmentation:
        return cls(config.gda, config.augment)

    def start(self, setup: MethodSetup) -> None:
        """Generate the pool: ``pool_per_class`` DDIM samples per class (inference mode, seeded by the run), or
        read it from ``pool_folder``."""
        super().start(setup)
        if self.pool_folder:
            images, labels = load_pool_folder(self.pool_folder, setup.images.shape[1], setup.images.shape[-1],
                                              setup.n_classes)
            self.pool_images_, self.pool_labels_ = images.to(setup.device), labels.to(setup.device)
            return
        generator = setup.generator
        if generator is None or not generator.conditional:
            raise ValueError("GDA needs a class-conditional generator: each synthetic pair carries its requested class")
        labels = class_labels(setup.n_classes, self.pool_per_class)  # (P,)
        seed = int(torch.randint(2**31 - 1, (1,), generator=setup.rng))
        sampler = SamplerConfig(n_steps=self.sampler_steps)
        images = sample_images(generator, labels.to(generator.device), sampler=sampler, seed=seed)  # (P, C, H, W)
        self.pool_images_ = images.to(setup.device)
        self.pool_labels_ = labels.to(setup.device)

    def step_loss(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, Metrics]:
        n_syn = round(self.ratio * x.shape[0])
        pick = torch.randint(self.pool_labels_.shape[0], (n_syn,), generator=self.setup_.rng).to(x.device)
        x_syn, y_syn = self.pool_images_[pick], self.pool_labels_[pick]  # (S, C, H, W), (S,)
        if self.augment:
            x_syn = random_shift_rotate(x_syn, rng=self.setup_.rng)
        features = model.features(torch.cat([x, x_syn]))  # (B + S, d)
        logits = model.head(features)
        per_sample = F.cross_entropy(logits, torch.cat([y, y_syn]), reduction="none")  # (B + S,)
        loss = per_sample.mean()
        metrics = {"ce_loss": loss.item(), "ce_real": per_sample[: x.shape[0]].mean().item(),
                   **feature_diagnostics(features[: x.shape[0]])}
        if n_syn:
            metrics["ce_synthetic"] = per_sample[x.shape[0]:].mean().item()
        return loss, metrics


def load_pool_folder(folder: str, channels: int, image_size: int, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A curated export's images and labels: class folders are mapped to class indices by the dataset's class
    names recorded in its ``manifest.json`` (``genreg_core.analysis.curation``)."""
    manifest_path = Path(folder) / "manifest.json"
    try:
        names = json.loads(manifest_path.read_text())["dataset"]["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"GDA pool folder {folder}: no readable manifest.json with the dataset's class names "
                         f"(export it with genreg curate or the Feature space page): {exc}") from exc
    if len(names) != n_classes:
        raise ValueError(f"GDA pool folder {folder} was curated for {len(names)} classes, the run has {n_classes}")
    dataset = load_image_folder(folder, image_size, channels)
    unknown = [name for name in dataset.class_names if name not in names]
    if unknown:
        raise ValueError(f"GDA pool folder {folder}: class folders {unknown} are not classes of the dataset")
    mapping = torch.tensor([names.index(name) for name in dataset.class_names])
    return dataset.images, mapping[dataset.labels]  # (P, C, H, W), (P,)

"""RandReg: random feature regularization with a fixed class-agnostic prior (docs/algorithms.md §4).

Zhong & Maki, "Regularizing CNN Transfer Learning with Randomised Regression" (CVPR 2020), as the
RandReg baseline of "Adaptive Random Feature Regularization on Fine-tuning Deep Neural Networks"
(Yamaguchi et al., CVPR 2024):
``L = CE(y, f(x)) + λ · mean((g(x) − z)²)`` with ``z ~ N(0, I)`` drawn afresh each step, no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genreg_core.config import RandRegOptions, TrainConfig
from genreg_core.training.methods.base import Forward, Method, Metrics, feature_diagnostics, randn


class RandReg(Method):
    """CE plus the squared gap between each feature and a reference vector ``z`` sampled from the prior."""

    name = "randreg"
    note = "RandReg (Zhong & Maki 2020): features pulled toward N(0, I) draws"

    def __init__(self, options: RandRegOptions | None = None):
        o = options or RandRegOptions()
        if o.weight < 0:
            raise ValueError(f"feature-regularization weight λ must be non-negative, got {o.weight}")
        self.weight = o.weight

    @classmethod
    def from_config(cls, config: TrainConfig) -> RandReg:
        return cls(config.randreg)

    def sample_references(self, labels: torch.Tensor, dim: int) -> torch.Tensor:
        """``z ~ N(0, I)``, one per label: (N, d)."""
        return randn((labels.shape[0], dim), self.setup_.rng, labels.device)

    def real_loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        features, logits = forward(x)  # (N, d), (N, K)
        ce = F.cross_entropy(logits, y)
        z = self.sample_references(y, features.shape[1]).detach()  # (N, d)
        reg = (features - z).pow(2).mean()  # mean over batch and feature dims
        self.last_features_, self.last_labels_ = features.detach(), y
        metrics = {"ce_loss": ce.item(), "feature_loss": reg.item(), **feature_diagnostics(features)}
        return ce + self.weight * reg, metrics

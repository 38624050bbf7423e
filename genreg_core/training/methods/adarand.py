"""AdaRand: adaptive random feature regularization (docs/algorithms.md §4).

"Adaptive Random Feature Regularization on Fine-tuning Deep Neural Networks" (Yamaguchi, Kanai,
Adachi, Chijiwa; CVPR 2024). The prior is one Gaussian per class, ``p(z|y=k) = N(μ_k, diag σ_k²)``,
initialised with the class-wise mean and (population) std of the initial model's features on the
training subset — the pretrained backbone's when ``TrainConfig.init = "pretrained"``, as the official
code (yshinya6/adarand) loads precomputed class statistics of the pretrained features. Only ``μ`` is
learned, ``σ`` stays fixed.

- Model step: ``L = CE(y, f(x)) + λ · mean((g(x) − z)²)``, ``z ~ N(μ_y, σ_y²)`` (no gradient).
- Running class means (no gradient): ``μ̄_k ← α μ̄_k + (1 − α) mean_{y_i=k} g(x_i)``.
- Prior step, after the model step (Adam on ``μ`` only):
  ``L_prior(μ) = mean_k (1 − cos(μ_k, μ̄_k))² + mean_{k≠l} cos(μ_k, μ_l)²``,
  with the official code's learning-rate schedule (``util/train_util.py: CosineAnnealingLR``, no warm-up):
  ``lr_s = lr_0 · cos(π · 7/16 · s / S)`` at prior step ``s`` of ``S`` (ends at 0.195 lr_0, not 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genreg_core.config import AdaRandOptions, RandRegOptions, TrainConfig
from genreg_core.training.methods.base import MethodSetup, Metrics, batch_features, randn
from genreg_core.training.methods.randreg import RandReg


def prior_loss(mu: torch.Tensor, mu_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of ``L_prior``: follow the running means, spread the classes apart. ``mu``, ``mu_bar``: (K, d)."""
    mu_unit = F.normalize(mu, dim=1)
    follow = (1 - (mu_unit * F.normalize(mu_bar, dim=1)).sum(1)).pow(2).mean()
    k = mu.shape[0]
    cos = mu_unit @ mu_unit.T  # (K, K)
    spread = (cos.pow(2).sum() - cos.diagonal().pow(2).sum()) / max(1, k * (k - 1))  # mean over k ≠ l
    return follow, spread


PRIOR_COSINE_CYCLES = 7.0 / 16.0  # num_cycles of the official CosineAnnealingLR


def prior_lr_at(step: int, total_steps: int | None, peak: float) -> float:
    """The official prior schedule ``peak · max(0, cos(π · 7/16 · min(1, s / S)))``; constant when ``S`` is unknown."""
    if not total_steps:
        return peak
    progress = min(1.0, max(0.0, step / total_steps))
    return peak * max(0.0, math.cos(math.pi * PRIOR_COSINE_CYCLES * progress))


def class_statistics(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean and (population) std of ``features`` (N, d): two (K, d) tensors."""
    counts = torch.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"AdaRand needs training images of every class; none for classes {missing}")
    mean = torch.zeros(n_classes, features.shape[1], device=features.device).index_add_(0, labels, features)
    mean = mean / counts[:, None]
    sq = torch.zeros_like(mean).index_add_(0, labels, (features - mean[labels]).pow(2))
    return mean, (sq / counts[:, None]).sqrt()


class AdaRand(RandReg):
    """RandReg with class-conditional Gaussian priors whose means adapt to the features and to each other."""

    name = "adarand"
    note = "AdaRand (Yamaguchi et al., CVPR 2024): adaptive class-conditional reference vectors"

    def __init__(self, randreg: RandRegOptions | None = None, options: AdaRandOptions | None = None,
                 n_probe_per_class: int = 10, n_references_per_class: int = 4):
        super().__init__(randreg)
        o = options or AdaRandOptions()
        if not 0 <= o.alpha <= 1:
            raise ValueError(f"AdaRand α must lie in [0, 1], got {o.alpha}")
        self.alpha = o.alpha
        self.prior_lr = o.prior_lr
        self.n_probe_per_class = n_probe_per_class  # fixed training images whose features each snapshot records
        self.n_references_per_class = n_references_per_class  # sampled z per class in each snapshot

    @classmethod
    def from_config(cls, config: TrainConfig) -> AdaRand:
        return cls(config.randreg, config.adarand)

    def start(self, setup: MethodSetup) -> None:
        """Initialise ``μ, σ`` as the per-class mean and std of the initial model's features (one no-grad pass)."""
        super().start(setup)
        k = setup.n_classes
        mean, std = class_statistics(batch_features(setup.model, setup.images), setup.labels, k)
        self.mu_ = nn.Parameter(mean.clone())  # (K, d), learned
        self.sigma_ = std  # (K, d), fixed
        self.mu_bar_ = mean.clone()  # (K, d), running class means
        self.prior_optimizer_ = torch.optim.Adam([self.mu_], lr=self.prior_lr)
        self.prior_step_ = 0  # prior steps taken (the schedule's s)
        self.total_steps_ = setup.total_steps  # the schedule's S: one prior step per classifier step
        probe = [torch.nonzero(setup.labels == c).flatten()[: self.n_probe_per_class] for c in range(k)]
        self.probe_index_ = torch.cat(probe)  # (P,) into setup.images
        self.reference_labels_ = torch.arange(k, device=setup.device).repeat_interleave(self.n_references_per_class)
        self.reference_noise_ = randn((self.reference_labels_.shape[0], mean.shape[1]), setup.rng, setup.device)

    def sample_references(self, labels: torch.Tensor, dim: int) -> torch.Tensor:
        """``z ~ N(μ_y, σ_y²)``, one per label: (N, d)."""
        mu = self.mu_.detach()[labels]
        return mu + self.sigma_[labels] * randn(tuple(mu.shape), self.setup_.rng, mu.device)

    def after_step(self) -> Metrics:
        """Update the running class means with the step's features, then take one prior step."""
        self.update_running_means(self.last_features_, self.last_labels_)
        return self.update_prior()

    def update_running_means(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """``μ̄_k ← α μ̄_k + (1 − α) mean_{y_i=k} g(x_i)`` for each class ``k`` present in the batch."""
        counts = torch.bincount(labels, minlength=self.mu_bar_.shape[0])[:, None]  # (K, 1)
        sums = torch.zeros_like(self.mu_bar_).index_add_(0, labels, features.detach().float())  # (K, d)
        batch_mean = sums / counts.clamp(min=1)
        moved = self.alpha * self.mu_bar_ + (1 - self.alpha) * batch_mean
        self.mu_bar_ = torch.where(counts > 0, moved, self.mu_bar_)

    def update_prior(self) -> Metrics:
        """One Adam step on ``μ`` for ``L_prior`` at the scheduled learning rate; returns its value and terms
        before the step and the learning rate used."""
        lr = prior_lr_at(self.prior_step_, self.total_steps_, self.prior_lr)
        for group in self.prior_optimizer_.param_groups:
            group["lr"] = lr
        follow, spread = prior_loss(self.mu_, self.mu_bar_)
        loss = follow + spread
        self.prior_optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        self.prior_optimizer_.step()
        self.prior_step_ += 1
        return {"prior_loss": loss.item(), "prior_follow": follow.item(), "prior_spread": spread.item(),
                "prior_lr": lr}

    def epoch_snapshot(self) -> dict[str, torch.Tensor]:
        """``mu``, ``mu_bar``, ``sigma`` (K, d); ``references`` (K·r, d) with ``reference_labels``;
        ``probe_features`` (P, d) of fixed training images with ``probe_labels``."""
        setup = self.setup_
        mu = self.mu_.detach()
        references = mu[self.reference_labels_] + self.sigma_[self.reference_labels_] * self.reference_noise_
        probe_features = batch_features(setup.model, setup.images[self.probe_index_])
        tensors = {"mu": mu, "mu_bar": self.mu_bar_, "sigma": self.sigma_, "references": references,
                   "reference_labels": self.reference_labels_, "probe_features": probe_features,
                   "probe_labels": setup.labels[self.probe_index_]}
        return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}

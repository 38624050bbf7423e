"""Semantic perturbations through exact DDIM inversion (docs/algorithms.md §6).

*Semantic Perturbations with Normalizing Flows for Improved Generalization* (Yüksel et al., ICCV 2021): train on
decodings of perturbed exact latents of the training images. Ours: the latent of a training image is its DDIM
inversion ``z = invert(x_0, y, τ)`` (computed once, before the first step: the training images do not change),
and each step

    ``L = (1 − ρ) CE(f(T(x)), y) + ρ CE(f(T(x̃)), ỹ)``,  ``x̃ = clamp(decode(z + Δz, ỹ, τ))``

with ``(z, ỹ)`` a batch of the same size drawn at random from the training set and ``Δz`` one of ``rand`` /
``away`` / ``adv`` (``genreg_core.diffusion.perturbation``). ρ is the clean/perturbed mix ratio; ρ = 0 is plain CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genreg_core.config import SemanticOptions, TrainConfig
from genreg_core.diffusion.inversion import decode, invert
from genreg_core.diffusion.perturbation import DEFAULT_EPS, check_perturbation, perturb_latents
from genreg_core.features.augment import random_shift_rotate
from genreg_core.features.extractor import ConvNet
from genreg_core.training.methods.base import (
    Method,
    MethodSetup,
    Metrics,
    feature_diagnostics,
    functional_forward,
    model_params,
    module_forward,
)


class SemanticPerturbation(Method):
    """CE on the real batch mixed at ratio ρ with CE on decodings of perturbed DDIM latents of training images."""

    name = "semantic"
    note = "semantic perturbations (Yüksel et al., ICCV 2021): CE on decodings of perturbed DDIM-inverted latents"
    needs_generator = True

    def __init__(self, options: SemanticOptions | None = None, augment: bool = True):
        o = options or SemanticOptions()
        eps = DEFAULT_EPS.get(o.perturbation, 0.0) if o.eps is None else o.eps
        check_perturbation(o.perturbation, o.norm, eps)
        if not 0 <= o.ratio <= 1:
            raise ValueError(f"semantic mix ratio must lie in [0, 1], got {o.ratio}")
        if o.pgd_steps < 1 or o.sampler_steps < 1 or o.tau < 1:
            raise ValueError("semantic perturbations need at least 1 PGD step, 1 DDIM step and a depth τ ≥ 1")
        if o.alpha is not None and not o.alpha > 0:
            raise ValueError(f"PGD step size alpha must be positive, got {o.alpha}")
        self.perturbation = o.perturbation
        self.norm = o.norm
        self.eps = eps
        self.alpha = eps if o.alpha is None else o.alpha
        self.pgd_steps = o.pgd_steps
        self.ratio = o.ratio
        self.tau = o.tau
        self.sampler_steps = o.sampler_steps
        self.augment = augment

    @classmethod
    def from_config(cls, config: TrainConfig) -> SemanticPerturbation:
        return cls(config.semantic, config.augment)

    def start(self, setup: MethodSetup) -> None:
        """Invert every training image once: ``latents_`` (N, C, H, W) = ``invert(x_0, y, τ)``."""
        super().start(setup)
        generator = setup.generator
        if generator is None:
            raise ValueError("semantic perturbations need a generator to invert the training images")
        if self.tau > generator.num_train_timesteps:
            raise ValueError(f"semantic depth τ must be at most {generator.num_train_timesteps}, got {self.tau}")
        self.conditional_ = generator.conditional
        labels = setup.labels if generator.conditional else None
        self.latents_ = invert(generator, setup.images, labels, self.tau, self.sampler_steps)

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return decode(self.setup_.generator, z, labels if self.conditional_ else None, self.tau, self.sampler_steps)

    def perturbed_batch(self, model: ConvNet, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` training images drawn at random: ``(x_0, x̃ = decode(z + Δz), y)``; for ``adv`` Δz attacks ``model``."""
        setup = self.setup_
        pick = torch.randint(setup.labels.shape[0], (n,), generator=setup.rng).to(setup.labels.device)
        x0, y, z = setup.images[pick], setup.labels[pick], self.latents_[pick]  # (n, C, H, W), (n,), (n, C, H, W)
        target = decode_fn = classify = None
        if self.perturbation == "adv":
            forward = functional_forward(model, {k: v.detach() for k, v in model_params(model).items()})
            with torch.no_grad():
                target = forward(x0)[1].argmax(1)  # ŷ: the classifier's own prediction on the clean image

            def decode_fn(latent: torch.Tensor) -> torch.Tensor:
                return self._decode(latent, y)

            def classify(images: torch.Tensor) -> torch.Tensor:
                return forward(images)[1]

        z_pert = perturb_latents(self.perturbation, z, self.eps, self.norm, setup.rng, target, decode_fn, classify,
                                 self.alpha, self.pgd_steps)
        with torch.no_grad():
            x_pert = self._decode(z_pert, y)
        return x0, x_pert, y

    def step_loss(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, Metrics]:
        if self.ratio == 0:
            return self.real_loss(module_forward(model), x, y)
        x0, x_pert, y_pert = self.perturbed_batch(model, x.shape[0])
        shift = (x_pert - x0).pow(2).mean().sqrt().item()
        if self.augment:
            x_pert = random_shift_rotate(x_pert, rng=self.setup_.rng)
        features = model.features(torch.cat([x, x_pert]))  # (2B, d)
        logits = model.head(features)
        ce_clean = F.cross_entropy(logits[: x.shape[0]], y)
        ce_pert = F.cross_entropy(logits[x.shape[0]:], y_pert)
        loss = (1 - self.ratio) * ce_clean + self.ratio * ce_pert
        return loss, {"ce_loss": ce_clean.item(), "ce_perturbed": ce_pert.item(), "perturbed_pixel_rms": shift,
                      **feature_diagnostics(features[: x.shape[0]])}

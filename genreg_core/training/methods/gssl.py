"""GSSL: meta-optimized synthetic samples as unlabelled data (docs/algorithms.md §6).

*Generative Semi-supervised Learning with Meta-Optimized Synthetic Samples* (ACML 2023, arXiv:2309.16143). The
classifier gets an unsupervised loss on synthetic samples, ``ℓ(x_p) = 1 − cos(g(T₁x_p), g(T₂x_p))``; the samples'
latents are optimized directly — no finder network — to lower

    ``J(z) = CE(B_val; θ') + γ mean_i (1 − max_j cos(g_θ(x_p,i), g_θ(x_j)))``,  ``x_p = G(z, c)``,

where ``θ' = θ − η ∇_θ [CE(B_tr; θ) + λ mean_i ℓ(x_p,i)]`` is MGR's one-step lookahead (``methods.lookahead``) and
the second term pulls each synthetic feature towards its most similar real feature of the batch (the
similarity-to-real term; ours: cosine to the nearest real feature, class-agnostic).

Ours as well: a bank of ``bank_per_class`` latents per class drawn from N(0, I) at the start; each step picks
``synthetic_batch`` of them; a meta step moves the picked latents by ``β ∇J / rms(∇J)`` per latent (a scale-free
step: the gradient through the lookahead is tiny, see §5), and the classifier step uses their decodings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genreg_core.config import GSSLOptions, TrainConfig
from genreg_core.features.augment import random_shift_rotate
from genreg_core.features.extractor import ConvNet
from genreg_core.training.methods.base import (
    Forward,
    Method,
    MethodSetup,
    Metrics,
    functional_forward,
    model_params,
    module_forward,
    randn,
)
from genreg_core.training.methods.lookahead import LookaheadResult, ddim_chain, lookahead_validation


def cosine_consistency_per_sample(forward: Forward, x_p: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """``1 − cos(g(T₁x_p), g(T₂x_p))`` per synthetic image, (S,); both views go through one forward pass."""
    views = torch.cat([random_shift_rotate(x_p, rng=rng), random_shift_rotate(x_p, rng=rng)])  # (2S, C, H, W)
    f1, f2 = forward(views)[0].chunk(2)  # (S, d) each
    return 1 - F.cosine_similarity(f1, f2, dim=1)


def similarity_to_real(synthetic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``1 − max_j cos(s_i, r_j)`` per synthetic feature ``s_i`` (S, d) against real features ``r`` (B, d): (S,)."""
    cos = F.normalize(synthetic, dim=1) @ F.normalize(real, dim=1).T  # (S, B)
    return 1 - cos.max(dim=1).values


class GSSL(Method):
    """CE on real images plus ``λ (1 − cos)`` consistency on decodings of directly meta-optimized latents."""

    name = "gssl"
    note = "GSSL (ACML 2023): cosine consistency on synthetic samples whose latents are meta-optimized directly"
    needs_generator = True
    needs_meta_validation = True
    records_latents = True

    def __init__(self, options: GSSLOptions | None = None, val_batch: int = 32):
        o = options or GSSLOptions()
        if o.weight < 0 or o.sim_weight < 0 or not o.latent_lr > 0:
            raise ValueError("GSSL needs λ ≥ 0, γ ≥ 0 and a positive latent step β")
        if min(o.bank_per_class, o.meta_period, o.sampler_steps, o.synthetic_batch, val_batch) < 1:
            raise ValueError("GSSL needs a bank, meta period, sampler steps and batch sizes of at least 1")
        if o.backprop_steps is not None and o.backprop_steps < 1:
            raise ValueError(f"GSSL backprop_steps must be at least 1 (or None for all), got {o.backprop_steps}")
        self.weight = o.weight
        self.sim_weight = o.sim_weight
        self.latent_lr = o.latent_lr
        self.bank_per_class = o.bank_per_class
        self.meta_period = o.meta_period
        self.sampler_steps = o.sampler_steps
        self.backprop_steps = o.backprop_steps
        self.synthetic_batch = o.synthetic_batch
        self.val_batch = val_batch

    @classmethod
    def from_config(cls, config: TrainConfig) -> GSSL:
        return cls(config.gssl, config.batch_size)

    def start(self, setup: MethodSetup) -> None:
        """Draw the latent bank ``initial_latents_`` (L, C, H, W) ~ N(0, I) and its classes (−1 if unconditional)."""
        super().start(setup)
        generator = setup.generator
        if generator is None:
            raise ValueError("GSSL needs a generator")
        if setup.meta_images is None or setup.meta_labels is None:
            raise ValueError("GSSL needs a held-out meta-validation set B_val")
        n = self.bank_per_class * setup.n_classes
        shape = (n, generator.channels, generator.image_size, generator.image_size)
        self.initial_latents_ = randn(shape, setup.rng, generator.device)
        self.latents_ = self.initial_latents_.clone()
        classes = torch.arange(setup.n_classes).repeat_interleave(self.bank_per_class)
        self.classes_ = (classes if generator.conditional else torch.full((n,), -1)).to(generator.device)
        self.n_steps_ = 0
        self.val_before_: list[float] = []
        self.val_after_: list[float] = []
        self.last_meta_: dict[str, torch.Tensor] = {}

    def _classes(self, pick: torch.Tensor) -> torch.Tensor | None:
        return self.classes_[pick] if self.setup_.generator.conditional else None

    def meta_objective(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float, pick: torch.Tensor,
                       z: torch.Tensor) -> tuple[torch.Tensor, LookaheadResult, torch.Tensor, torch.Tensor]:
        """``(J(z), lookahead, x_p, similarity term)`` for latents ``z`` (S, C, H, W) of bank rows ``pick``."""
        setup = self.setup_
        x_p = ddim_chain(setup.generator, z, self._classes(pick), self.sampler_steps, self.backprop_steps)
        x_p = x_p.to(setup.device)
        meta = lookahead_validation(model, lambda forward: self.real_loss(forward, x, y)[0],
                                    lambda forward: cosine_consistency_per_sample(forward, x_p, setup.rng),
                                    self.weight, lr, setup.meta_images, setup.meta_labels, self.val_batch, setup.rng)
        real = meta.forward(x)[0].detach()  # (B, d)
        sim = similarity_to_real(meta.forward(x_p)[0], real).mean()
        return meta.val_after + self.sim_weight * sim, meta, x_p, sim

    def meta_step(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float, pick: torch.Tensor) -> Metrics:
        """One scale-free descent step of the picked latents on ``J``."""
        z = self.latents_[pick].clone().requires_grad_(True)
        objective, meta, x_p, sim = self.meta_objective(model, x, y, lr, pick, z)
        grad, weight_grad = torch.autograd.grad(objective, [z, meta.weights])
        rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp(min=1e-20).view(-1, 1, 1, 1)  # (S, 1, 1, 1)
        self.latents_[pick] = (z - self.latent_lr * grad / rms).detach()
        influence = weight_grad.detach() * x_p.shape[0] / lr  # −λ ∇CE_val(θ')·∇ℓ_i(θ), as MGR records it
        self.val_before_.append(meta.val_before.item())
        self.val_after_.append(meta.val_after.item())
        self.last_meta_ = {"latents": torch.stack([self.initial_latents_[pick], self.latents_[pick]]),
                           "sample_classes": self.classes_[pick].cpu(), "influence": influence}
        return {"gssl_val_loss_before": meta.val_before.item(), "gssl_val_loss_after": meta.val_after.item(),
                "gssl_val_gain": meta.val_before.item() - meta.val_after.item(), "gssl_similarity": sim.item(),
                "gssl_latent_grad_norm": grad.norm().item()}

    def step_loss(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, Metrics]:
        """Meta step on a picked batch of latents (every ``meta_period`` steps), then CE + λ ℓ on their decodings."""
        setup = self.setup_
        pick = torch.randperm(self.latents_.shape[0], generator=setup.rng)[: self.synthetic_batch]
        pick = pick.to(self.latents_.device)
        metrics: Metrics = {}
        meta = self.n_steps_ % self.meta_period == 0
        if meta:
            metrics.update(self.meta_step(model, x, y, lr, pick))
        self.n_steps_ += 1
        with torch.no_grad():
            x_p = ddim_chain(setup.generator, self.latents_[pick], self._classes(pick), self.sampler_steps)
        x_p = x_p.to(setup.device)
        if meta:
            self.last_meta_["sample_images"] = x_p
        real, real_metrics = self.real_loss(module_forward(model), x, y)
        unsup = cosine_consistency_per_sample(functional_forward(model, model_params(model)), x_p, setup.rng).mean()
        metrics.update(real_metrics, unsup_loss=unsup.item())
        return real + self.weight * unsup, metrics

    def epoch_snapshot(self) -> dict[str, torch.Tensor]:
        """Like MGR's: ``latents`` (2, S, C, H, W) = [initial z, optimized z] of the epoch's last meta step,
        ``sample_classes`` (S,), ``sample_images`` (S, C, H, W) = G(optimized z), ``influence`` (S,), and the
        epoch's ``val_loss_before`` / ``val_loss_after`` (M,), one per meta step."""
        tensors = dict(self.last_meta_, val_loss_before=torch.tensor(self.val_before_),
                       val_loss_after=torch.tensor(self.val_after_))
        self.val_before_, self.val_after_ = [], []
        return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}

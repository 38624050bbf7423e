"""What the meta-learned generative methods share: a differentiable DDIM chain and a one-step lookahead.

MGR (ALGORITHMS.md §5) and GSSL (§6) both pick generator latents by the validation loss of the classifier
after one differentiable SGD step on a regularizer of the synthetic samples:
``θ' = θ − η ∇_θ [L_real(B_tr; θ) + λ mean_i w_i ℓ_i(x_p; θ)]`` then ``CE(B_val; θ')``
(``torch.func.functional_call`` on a dict of parameters, no writes into the module).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genreg_core.config import SamplerConfig
from genreg_core.diffusion import Generator
from genreg_core.features import ConvNet
from genreg_core.methods.base import Forward, functional_forward, model_params
from genreg_core.sampling import predict_eps, step_grid


def ddim_chain(generator: Generator, x_T: torch.Tensor, labels: torch.Tensor | None, n_steps: int,
               backprop_steps: int | None = None) -> torch.Tensor:
    """Deterministic DDIM from noise ``x_T`` to ``x_0``, differentiable in ``x_T`` (Song et al. 2021, eq. 12, η = 0).

    Each step: ``x̂_0 = clip((x_s − sqrt(1 − ᾱ_s) ε̂) / sqrt(ᾱ_s))``, ``ε̂ ← (x_s − sqrt(ᾱ_s) x̂_0) / sqrt(1 − ᾱ_s)``,
    ``x_{s'} = sqrt(ᾱ_{s'}) x̂_0 + sqrt(1 − ᾱ_{s'}) ε̂`` — the update of ``sampling.reverse_process``.
    With ``backprop_steps = k`` only the last ``k`` steps backpropagate through the UNet; earlier steps treat
    ``ε_θ`` as a constant but keep the (linear) update differentiable, so ``x_T`` still gets a gradient.
    """
    steps = step_grid(generator.num_train_timesteps, SamplerConfig(n_steps=n_steps))
    first_with_unet = 0 if backprop_steps is None else max(0, len(steps) - 1 - backprop_steps)
    x = x_T
    for i, (s, s_next) in enumerate(zip(steps[:-1], steps[1:])):
        if i >= first_with_unet:
            eps = predict_eps(generator, x, s, labels)
        else:
            with torch.no_grad():
                eps = predict_eps(generator, x, s, labels)
        ab, ab_next = generator.alpha_bar(s), generator.alpha_bar(s_next)
        x0_hat = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
        eps = (x - math.sqrt(ab) * x0_hat) / math.sqrt(1 - ab)
        x = x0_hat if s_next == 0 else math.sqrt(ab_next) * x0_hat + math.sqrt(1 - ab_next) * eps
    return x


def lookahead(params: dict[str, torch.Tensor], loss: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
    """One differentiable SGD step ``θ' = θ − η ∇_θ loss`` (the graph is kept for second-order gradients)."""
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    return {name: p if g is None else p - lr * g for (name, p), g in zip(params.items(), grads)}


def pick_batch(images: torch.Tensor, labels: torch.Tensor, size: int,
               rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``images``/``labels`` when there are at most ``size``, else a random ``size`` of them."""
    if labels.shape[0] <= size:
        return images, labels
    pick = torch.randperm(labels.shape[0], generator=rng)[:size].to(labels.device)
    return images[pick], labels[pick]


@dataclass
class LookaheadResult:
    """The meta objective of one synthetic batch: the validation loss before and after the lookahead."""

    val_before: torch.Tensor  # () CE(B_val; θ), no gradient
    val_after: torch.Tensor  # () CE(B_val; θ'), differentiable in the synthetic batch and in ``weights``
    weights: torch.Tensor  # (S,) per-sample weights w_i = 1 of the regularizer (leaf, requires grad)
    forward: Forward  # the classifier at θ (functional, BatchNorm on batch statistics)
    x_val: torch.Tensor  # (M, C, H, W) the validation batch used
    y_val: torch.Tensor  # (M,)


def lookahead_validation(model: ConvNet, real_loss: Callable[[Forward], torch.Tensor],
                         regularizer: Callable[[Forward], torch.Tensor], weight: float, lr: float,
                         meta_images: torch.Tensor, meta_labels: torch.Tensor, val_batch: int,
                         rng: torch.Generator) -> LookaheadResult:
    """``θ' = θ − η ∇_θ [real_loss(θ) + λ mean_i w_i ℓ_i(θ)]``, then ``CE(B_val; θ')`` on a random validation batch.

    ``regularizer(forward)`` returns the per-sample loss ``ℓ_i`` (S,) of the synthetic batch. ``∂ val_after / ∂ w_i``
    is ``−(η/S) λ ∇CE(B_val; θ')·∇ℓ_i(θ)``, the per-sample influence both methods record.
    """
    params = model_params(model)
    forward = functional_forward(model, params)
    real = real_loss(forward)
    per_sample = regularizer(forward)  # (S,)
    weights = torch.ones(per_sample.shape[0], device=per_sample.device, requires_grad=True)
    params_after = lookahead(params, real + weight * (weights * per_sample).mean(), lr)
    x_val, y_val = pick_batch(meta_images, meta_labels, val_batch, rng)
    with torch.no_grad():
        val_before = F.cross_entropy(forward(x_val)[1], y_val)
    val_after = F.cross_entropy(functional_forward(model, params_after)(x_val)[1], y_val)
    return LookaheadResult(val_before, val_after, weights, forward, x_val, y_val)

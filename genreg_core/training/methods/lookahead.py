"""What the meta-learned generative methods share: a one-step lookahead and its validation loss.

MGR (docs/algorithms.md §5) and GSSL (§6) both pick generator latents by the validation loss of the classifier
after one differentiable SGD step on a regularizer of the synthetic samples:
``θ' = θ − η ∇_θ [L_real(B_tr; θ) + λ mean_i w_i ℓ_i(x_p; θ)]`` then ``CE(B_val; θ')``
(``torch.func.functional_call`` on a dict of parameters, no writes into the module). The synthetic samples come
from ``sampling.ddim_chain``, re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genreg_core.diffusion.sampling import ddim_chain
from genreg_core.features.extractor import ConvNet
from genreg_core.training.methods.base import Forward, functional_forward, model_params

__all__ = ["LookaheadResult", "ddim_chain", "lookahead", "lookahead_validation", "pick_batch"]


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
    params: dict[str, torch.Tensor]  # θ, as the functional forward sees it
    real: torch.Tensor  # () the real-batch loss at θ (in the lookahead's graph)
    x_val: torch.Tensor  # (M, C, H, W) the validation batch used
    y_val: torch.Tensor  # (M,)


def lookahead_validation(model: ConvNet, real_loss: Callable[[Forward], torch.Tensor],
                         regularizer: Callable[[Forward], torch.Tensor], weight: float, lr: float,
                         meta_images: torch.Tensor, meta_labels: torch.Tensor, val_batch: int,
                         rng: torch.Generator, step: Callable = lookahead) -> LookaheadResult:
    """``θ' = θ − η ∇_θ [real_loss(θ) + λ mean_i w_i ℓ_i(θ)]``, then ``CE(B_val; θ')`` on a random validation batch.

    ``step(params, loss, lr)`` takes the differentiable step (plain SGD by default; MGR's Adam-shaped option).
    ``regularizer(forward)`` returns the per-sample loss ``ℓ_i`` (S,) of the synthetic batch. ``∂ val_after / ∂ w_i``
    is ``−(η/S) λ ∇CE(B_val; θ')·∇ℓ_i(θ)``, the per-sample influence both methods record.
    """
    params = model_params(model)
    forward = functional_forward(model, params)
    real = real_loss(forward)
    per_sample = regularizer(forward)  # (S,)
    weights = torch.ones(per_sample.shape[0], device=per_sample.device, requires_grad=True)
    params_after = step(params, real + weight * (weights * per_sample).mean(), lr)
    x_val, y_val = pick_batch(meta_images, meta_labels, val_batch, rng)
    with torch.no_grad():
        val_before = F.cross_entropy(forward(x_val)[1], y_val)
    val_after = F.cross_entropy(functional_forward(model, params_after)(x_val)[1], y_val)
    return LookaheadResult(val_before, val_after, weights, forward, params, real, x_val, y_val)

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

__all__ = ["LookaheadResult", "alignment_influence", "ddim_chain", "lookahead", "lookahead_validation", "pick_batch"]


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
    params_after: dict[str, torch.Tensor] | None = None  # θ' (in the graph)
    regularized: torch.Tensor | None = None  # () λ mean_i w_i ℓ_i(θ), the regularizer term of the lookahead loss


def alignment_influence(result: LookaheadResult) -> torch.Tensor:
    """``−λ ∇CE(B_val; θ')·∇ℓ_i(θ)`` (S,) for each synthetic sample, whatever ``step`` the lookahead took.

    Under plain SGD this equals ``(S/η) ∂CE(B_val; θ')/∂w_i``; under the Adam-shaped step it does not (the
    derivative goes through Adam's preconditioner), so it is computed directly: ``h = ∇_θ' CE(B_val; θ')``
    (detached), then ``∂/∂w_i [h · ∇_θ λ mean_j w_j ℓ_j(θ)] = (λ/S) h·∇ℓ_i``, times ``−S``. Keeps every graph.
    """
    if result.params_after is None or result.regularized is None:
        raise ValueError("alignment_influence needs a LookaheadResult from lookahead_validation")
    names = list(result.params)
    after = [result.params_after[k] for k in names]
    h = torch.autograd.grad(result.val_after, after, retain_graph=True, allow_unused=True)
    g = torch.autograd.grad(result.regularized, [result.params[k] for k in names], create_graph=True,
                            retain_graph=True, allow_unused=True)
    dot = sum((hk.detach() * gk).sum() for hk, gk in zip(h, g) if hk is not None and gk is not None)
    (per_weight,) = torch.autograd.grad(dot, result.weights, retain_graph=True)
    return -per_weight.detach() * result.weights.shape[0]


def lookahead_validation(model: ConvNet, real_loss: Callable[[Forward], torch.Tensor],
                         regularizer: Callable[[Forward], torch.Tensor], weight: float, lr: float,
                         meta_images: torch.Tensor, meta_labels: torch.Tensor, val_batch: int,
                         rng: torch.Generator, step: Callable = lookahead) -> LookaheadResult:
    """``θ' = θ − η ∇_θ [real_loss(θ) + λ mean_i w_i ℓ_i(θ)]``, then ``CE(B_val; θ')`` on a random validation batch.

    ``step(params, loss, lr)`` takes the differentiable step (plain SGD by default; MGR's Adam-shaped option).
    ``regularizer(forward)`` returns the per-sample loss ``ℓ_i`` (S,) of the synthetic batch. ``∂ val_after / ∂ w_i``
    is ``−(η/S) λ ∇CE(B_val; θ')·∇ℓ_i(θ)`` under plain SGD only (see :func:`alignment_influence` for any step).
    """
    params = model_params(model)
    forward = functional_forward(model, params)
    real = real_loss(forward)
    per_sample = regularizer(forward)  # (S,)
    weights = torch.ones(per_sample.shape[0], device=per_sample.device, requires_grad=True)
    regularized = weight * (weights * per_sample).mean()
    params_after = step(params, real + regularized, lr)
    x_val, y_val = pick_batch(meta_images, meta_labels, val_batch, rng)
    with torch.no_grad():
        val_before = F.cross_entropy(forward(x_val)[1], y_val)
    val_after = F.cross_entropy(functional_forward(model, params_after)(x_val)[1], y_val)
    return LookaheadResult(val_before, val_after, weights, forward, params, real, x_val, y_val, params_after,
                           regularized)

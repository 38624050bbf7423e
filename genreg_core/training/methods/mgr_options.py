"""Options of MGR where the paper is silent (all ours): a class-conditioned finder and an Adam lookahead.

- ``ConditionalFinder``: ``F_ω(u, c) = u + conv([u, e(c)])`` with a learned class embedding ``e(c)`` broadcast
  over the image, so the finder can move latents differently per class. Zero-initialised like ``Finder``.
- ``adam_lookahead``: the one-step lookahead ``θ'`` taken in the classifier's own optimizer geometry —
  the step ``torch.optim.Adam`` (L2 weight decay) would take from its current moment estimates — instead
  of plain SGD. The classifier trains with Adam, so an SGD lookahead asks the finder to help a step the
  classifier never takes.
"""

from __future__ import annotations

import torch
from torch import nn


class ConditionalFinder(nn.Module):
    """``F_ω(u, c) = u + conv([u, e(c)])``; the last convolution is zero-initialised, so ``F_ω`` starts as identity."""

    def __init__(self, channels: int, n_classes: int, hidden: int = 16, embed_dim: int = 4):
        super().__init__()
        self.embed = nn.Embedding(n_classes, embed_dim)
        self.residual = nn.Sequential(nn.Conv2d(channels + embed_dim, hidden, 3, padding=1), nn.SiLU(),
                                      nn.Conv2d(hidden, channels, 3, padding=1))
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, u: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        e = self.embed(classes)[:, :, None, None].expand(-1, -1, *u.shape[2:])  # (N, E, H, W)
        return u + self.residual(torch.cat([u, e], 1))  # (N, C, H, W)


def adam_lookahead(params: dict[str, torch.Tensor], loss: torch.Tensor, lr: float,
                   optimizer: torch.optim.Adam) -> dict[str, torch.Tensor]:
    """The step ``optimizer`` (``torch.optim.Adam``) would take next, differentiable in ``loss``'s gradient.

    With ``g = ∇_θ loss + wd·θ``, ``m' = β₁m + (1 − β₁)g``, ``v' = β₂v + (1 − β₂)g²`` from the optimizer's
    current moments ``m, v`` and step count ``k``: ``θ' = θ − η (m'/(1 − β₁^{k+1})) / (sqrt(v'/(1 − β₂^{k+1})) + ε)``
    (Kingma & Ba 2015, Algorithm 1). The whole step is differentiable, the preconditioner included (``v̂'`` is
    clamped at 1e-30 inside the square root so that a parameter without gradient gets a zero, not NaN, derivative).
    """
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True, allow_unused=True)
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    eps, weight_decay = group["eps"], group["weight_decay"]
    out = {}
    for (name, p), g in zip(params.items(), grads):
        if g is None:
            out[name] = p
            continue
        g = g + weight_decay * p
        state = optimizer.state.get(p, {})
        k = float(state.get("step", 0)) + 1
        m = state.get("exp_avg", torch.zeros_like(p))
        v = state.get("exp_avg_sq", torch.zeros_like(p))
        m_hat = (beta1 * m + (1 - beta1) * g) / (1 - beta1 ** k)
        v_hat = (beta2 * v + (1 - beta2) * g.pow(2)) / (1 - beta2 ** k)
        out[name] = p - lr * m_hat / (v_hat.clamp_min(1e-30).sqrt() + eps)
    return out

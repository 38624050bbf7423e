"""Deterministic DDIM inversion to a depth τ and decoding back: the invertible map of semantic perturbations.

*Semantic Perturbations with Normalizing Flows for Improved Generalization* (Yüksel et al., ICCV 2021) perturbs
the exact latent of an invertible model. Ours (docs/algorithms.md §6): the invertible map is the DDIM ODE (Song et al.
2021, eq. 12 with η = 0) on the grid ``step_grid(τ, n)``. ``invert`` runs it forward from ``x_0`` to ``x_τ``,
``decode`` runs the same steps backward (``sampling.ddim_chain``). Each forward step from s to s' uses
``ε̂ = ε_θ(x_s, s')`` — the noise the decoder will predict at s' — so the round trip is exact up to the change of
``ε_θ`` between ``x_s`` and ``x_{s'}``; :func:`round_trip_errors` measures what is left.
"""

from __future__ import annotations

import torch

from genreg_core.config import SamplerConfig
from genreg_core.diffusion.model import Generator
from genreg_core.diffusion.sampling import ddim_chain, ddim_step, predict_eps, step_grid


def _check(generator: Generator, tau: int, n_steps: int) -> None:
    T = generator.num_train_timesteps
    if not 0 <= tau <= T:
        raise ValueError(f"inversion depth tau must lie in [0, {T}], got {tau}")
    if n_steps < 1:
        raise ValueError(f"the DDIM inversion needs at least 1 step, got {n_steps}")


def invert(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, tau: int,
           n_steps: int = 10, batch_size: int = 256) -> torch.Tensor:
    """``x_0`` (N, C, H, W) in [-1, 1] → ``x_τ`` (N, C, H, W) by the DDIM ODE run forward; ``x_0`` itself at τ = 0.

    Step s → s' (increasing): ``ε̂ = ε_θ(x_s, s')``, then the decoder's update :func:`sampling.ddim_step` taken
    towards the other end (x̂_0 is ``x_0`` itself at s = 0). No gradient.
    """
    _check(generator, tau, n_steps)
    steps = step_grid(tau, SamplerConfig(n_steps=n_steps))[::-1]  # 0, ..., τ
    device = generator.device
    out = []
    with torch.no_grad():
        for start in range(0, x0.shape[0], batch_size):
            x = x0[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device) if labels is not None else None
            for s, s_next in zip(steps[:-1], steps[1:]):
                eps = predict_eps(generator, x, s_next, y)
                x, _ = ddim_step(x, eps, generator.alpha_bar(s), generator.alpha_bar(s_next))
            out.append(x)
    return torch.cat(out).to(x0.device) if out else x0.clone()


def decode(generator: Generator, z: torch.Tensor, labels: torch.Tensor | None, tau: int,
           n_steps: int = 10) -> torch.Tensor:
    """``x_τ`` (N, C, H, W) → ``x_0`` in [-1, 1] by the same DDIM steps backward; differentiable in ``z``.

    Wrap in ``torch.no_grad()`` when no gradient is needed.
    """
    _check(generator, tau, n_steps)
    device = generator.device
    y = labels.to(device) if labels is not None else None
    return ddim_chain(generator, z.to(device), y, n_steps, t=tau).clamp(-1, 1).to(z.device)


def round_trip_errors(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, taus: list[int],
                      step_counts: list[int]) -> list[dict[str, float]]:
    """``decode(invert(x_0))`` against ``x_0`` for every (τ, n): pixel MSE, RMS, max abs. error ([-1, 1] units)."""
    rows = []
    for tau in taus:
        for n in step_counts:
            with torch.no_grad():
                back = decode(generator, invert(generator, x0, labels, tau, n), labels, tau, n)
            err = (back.cpu() - x0.cpu()).float()
            rows.append({"tau": tau, "n_steps": n, "mse": float(err.pow(2).mean()),
                         "rms": float(err.pow(2).mean().sqrt()), "max_abs": float(err.abs().max())})
    return rows

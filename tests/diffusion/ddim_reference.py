"""An independent DDIM inversion and decoding for tests, written from Song et al. (2021), eq. 12, with the UNet
called directly: the production code (``diffusion.inversion``, ``sampling.ddim_step``) is never used here."""

from __future__ import annotations

import math

import torch


def _alpha_bar(generator, s: int) -> float:
    return 1.0 if s == 0 else float(generator.scheduler.alphas_cumprod[s - 1])  # step s = scheduler index s − 1


def _eps(generator, x: torch.Tensor, s: int, labels: torch.Tensor) -> torch.Tensor:
    return generator.unet(x, torch.full((x.shape[0],), s - 1), class_labels=labels).sample


def _clipped(x: torch.Tensor, eps: torch.Tensor, ab: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂_0 clipped to [-1, 1] and the ε it implies (x̂_0 = x at ᾱ = 1)."""
    if ab >= 1.0:
        return x, eps
    x0 = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
    return x0, (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)


@torch.no_grad()
def invert_by_hand(generator, x0: torch.Tensor, labels: torch.Tensor, grid: list[int]) -> torch.Tensor:
    """x_0 → x_τ along the increasing ``grid`` (0, ..., τ); ε evaluated at the step being moved to."""
    x = x0
    for s, s_next in zip(grid[:-1], grid[1:]):
        x0_hat, eps = _clipped(x, _eps(generator, x, s_next, labels), _alpha_bar(generator, s))
        ab = _alpha_bar(generator, s_next)
        x = math.sqrt(ab) * x0_hat + math.sqrt(1 - ab) * eps
    return x


@torch.no_grad()
def decode_by_hand(generator, z: torch.Tensor, labels: torch.Tensor, grid: list[int]) -> torch.Tensor:
    """x_τ → x_0 along the decreasing ``grid`` (τ, ..., 0), clipped to [-1, 1]."""
    x = z
    for s, s_next in zip(grid[:-1], grid[1:]):
        x0_hat, eps = _clipped(x, _eps(generator, x, s, labels), _alpha_bar(generator, s))
        ab = _alpha_bar(generator, s_next)
        x = x0_hat if s_next == 0 else math.sqrt(ab) * x0_hat + math.sqrt(1 - ab) * eps
    return x.clamp(-1, 1)

"""The random augmentation T(·) of the method specs: small shift and rotation, no flips (digits are not symmetric).

Self-supervised pretraining (``genreg_core.features.backbone``) uses a stronger view of the same family:
:func:`random_view` adds scaling and a random erased square.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_shift_rotate(x: torch.Tensor, max_shift: int = 2, max_degrees: float = 10.0,
                        rng: torch.Generator | None = None, max_scale: float = 0.0) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels and rotate it by up to ±``max_degrees``.

    ``x`` is ``(N, C, H, W)`` in [-1, 1]; areas moved in from outside are filled with -1 (background),
    like a crop with padding 2. With ``max_scale > 0`` each image is also zoomed by a factor in
    ``[1 − max_scale, 1 + max_scale]`` (no extra random draw otherwise). Differentiable in ``x``.
    """
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=rng) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.randint(-max_shift, max_shift + 1, (n, 2), generator=rng).float()
             * torch.tensor([2.0 / w, 2.0 / h]))
    inv_zoom = torch.ones(n)
    if max_scale > 0:
        inv_zoom = 1 / (1 + (torch.rand(n, generator=rng) * 2 - 1) * max_scale)
    cos, sin = angle.cos() * inv_zoom, angle.sin() * inv_zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def random_erase(x: torch.Tensor, size: int, p: float = 0.5, rng: torch.Generator | None = None) -> torch.Tensor:
    """Set a random ``size × size`` square of each image to -1 (background) with probability ``p``."""
    n, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (n,), generator=rng)
    left = torch.randint(0, w - size + 1, (n,), generator=rng)
    apply = torch.rand(n, generator=rng) < p
    rows = torch.arange(h)[None, :, None]  # (1, H, 1)
    cols = torch.arange(w)[None, None, :]  # (1, 1, W)
    inside = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + size)
              & (cols >= left[:, None, None]) & (cols < left[:, None, None] + size) & apply[:, None, None])
    return torch.where(inside[:, None].to(x.device), torch.full_like(x, -1.0), x)


def random_view(x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    """A contrastive view: shift up to 2 px, rotate ±15°, zoom ±15 %, erase a quarter-side square half the time."""
    x = random_shift_rotate(x, max_shift=2, max_degrees=15.0, rng=rng, max_scale=0.15)
    return random_erase(x, max(1, x.shape[-1] // 4), p=0.5, rng=rng)

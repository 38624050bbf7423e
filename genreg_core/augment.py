"""The random augmentation T(·) of the method specs: small shift and rotation, no flips (digits are not symmetric)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_shift_rotate(x: torch.Tensor, max_shift: int = 2, max_degrees: float = 10.0,
                        rng: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels and rotate it by up to ±``max_degrees``.

    ``x`` is ``(N, C, H, W)`` in [-1, 1]; areas moved in from outside are filled with -1 (background),
    like a crop with padding 2. Differentiable in ``x``.
    """
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=rng) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.randint(-max_shift, max_shift + 1, (n, 2), generator=rng).float()
             * torch.tensor([2.0 / w, 2.0 / h]))
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1

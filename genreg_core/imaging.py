"""Image tensors to pixels: uint8 arrays, grids and PNG bytes (no plotting, no UI)."""

from __future__ import annotations

import io

import numpy as np
import torch


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    a = np.clip((a + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return a.transpose(0, 2, 3, 1)


def make_grid(images: torch.Tensor | np.ndarray, n_cols: int, scale: int = 1, pad: int = 1,
              pad_value: int = 255) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one (H', W') or (H', W', 3) uint8 image, row-major."""
    pixels = to_uint8(images)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = pixels.shape
    n_cols = max(1, min(n_cols, n)) if n else 1
    n_rows = (n + n_cols - 1) // n_cols
    grid = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, n_cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = pixels[i]
    return grid[..., 0] if c == 1 else grid


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) array as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()

"""An independent reference for the augmentation T(·) of ALGORITHMS.md (shift by up to 2 pixels, rotate by up to
±10° about the image centre, background −1 moved in, no flips), written in numpy from that definition: the
production code (``features.augment``, torch's ``affine_grid``/``grid_sample``) is never used here.

``fit_shift_rotate`` finds the (dy, dx, degrees) of T that best explains a view of an image, so a test can check
that what the code fed a network is a T of the right image without replaying its random draws.
"""

from __future__ import annotations

import numpy as np

SHIFTS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]  # every shift T may draw, in pixels


def shift_by_hand(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[r, c] = image[r + dy, c + dx]`` where that pixel exists, −1 elsewhere; ``image`` is (H, W)."""
    h, w = image.shape
    padded = np.full((h + 8, w + 8), -1.0)
    padded[4:4 + h, 4:4 + w] = image
    return padded[4 + dy:4 + dy + h, 4 + dx:4 + dx + w]


def shift_rotate_by_hand(image: np.ndarray, dy: float, dx: float, degrees: np.ndarray) -> np.ndarray:
    """(A, H, W): each output pixel centre p (pixels, about the centre (H−1)/2, (W−1)/2) reads the image at
    ``R(a) p + (dx, dy)`` by bilinear interpolation, with −1 outside; one slice per angle ``a`` in ``degrees``."""
    h, w = image.shape
    a = np.radians(np.asarray(degrees, dtype=float))[:, None, None]  # (A, 1, 1)
    v, u = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")  # (H, W) each
    src_c = np.cos(a) * u - np.sin(a) * v + dx + (w - 1) / 2  # (A, H, W) source column
    src_r = np.sin(a) * u + np.cos(a) * v + dy + (h - 1) / 2  # source row
    padded = np.zeros((h + 2, w + 2))  # image + 1, so that outside reads 0, i.e. background −1
    padded[1:-1, 1:-1] = image + 1
    r0, c0 = np.floor(src_r), np.floor(src_c)
    fr, fc = src_r - r0, src_c - c0

    def at(r, c):
        inside = (r >= -1) & (r <= h) & (c >= -1) & (c <= w)
        return np.where(inside, padded[np.clip(r + 1, 0, h + 1).astype(int), np.clip(c + 1, 0, w + 1).astype(int)],
                        0.0)

    value = ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c0 + 1)
             + fr * (1 - fc) * at(r0 + 1, c0) + fr * fc * at(r0 + 1, c0 + 1))
    return value - 1


def fit_shift_rotate(view: np.ndarray, image: np.ndarray, max_degrees: float = 12.0) -> tuple[float, int, int, float]:
    """(max abs error, dy, dx, degrees) of the T — shift in ``SHIFTS``, angle in ±``max_degrees`` on a 0.5° grid,
    then a 0.05° grid about the best — that best reproduces ``view`` from ``image``, both (H, W)."""
    def best_of(shifts, degrees):
        best = (np.inf, 0, 0, 0.0)
        for dy, dx in shifts:
            errors = np.abs(shift_rotate_by_hand(image, dy, dx, degrees) - view).max(axis=(1, 2))  # (A,)
            i = int(errors.argmin())
            if errors[i] < best[0]:
                best = (float(errors[i]), dy, dx, float(degrees[i]))
        return best

    _, dy, dx, coarse = best_of(SHIFTS, np.arange(-max_degrees, max_degrees + 0.25, 0.5))
    return best_of([(dy, dx)], np.arange(coarse - 0.5, coarse + 0.525, 0.05))

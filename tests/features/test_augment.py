"""The augmentation T(·) against a numpy reference written from its definition (tests/features/augment_reference.py):
whole-pixel shifts within ±2, rotations within ±10°, background moved in, independent draws."""

from __future__ import annotations

import numpy as np
import torch

from genreg_core.features.augment import random_shift_rotate
from tests.features.augment_reference import SHIFTS, fit_shift_rotate, shift_by_hand


def test_without_rotation_each_image_is_shifted_by_whole_pixels_within_two(digits):
    x = digits.images[:64]
    views = random_shift_rotate(x, max_degrees=0.0, rng=torch.Generator().manual_seed(0)).numpy()
    seen = []
    for view, image in zip(views[:, 0], x.numpy()[:, 0]):
        matches = [s for s in SHIFTS if np.abs(shift_by_hand(image, *s) - view).max() < 1e-5]
        assert matches, "a view that is no whole-pixel shift of at most 2 of its image"
        seen.append(matches[0])
    dys, dxs = {s[0] for s in seen}, {s[1] for s in seen}
    assert len(set(seen)) >= 15 and dys == dxs == {-2, -1, 0, 1, 2}  # every shift in range is drawn


def test_each_view_is_a_shift_and_a_rotation_of_at_most_ten_degrees_of_its_own_image(digits):
    x = digits.images[:12].numpy()
    views = random_shift_rotate(torch.from_numpy(x), rng=torch.Generator().manual_seed(1)).numpy()
    angles = []
    for i in range(len(x)):
        error, _, _, degrees = fit_shift_rotate(views[i, 0], x[i, 0])
        assert error < 0.01 and abs(degrees) <= 10.05
        angles.append(degrees)
        assert fit_shift_rotate(views[i, 0], x[(i + 1) % len(x), 0])[0] > 0.5  # the fit tells images apart
    assert max(angles) > 3 and min(angles) < -3  # rotations of both signs are drawn


def test_background_stays_background_and_each_call_draws_anew(digits):
    blank = torch.full((4, 1, 16, 16), -1.0)
    moved = random_shift_rotate(blank, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(moved, blank, atol=1e-6, rtol=0)  # only background moves in
    x = digits.images[:8]
    rng = torch.Generator().manual_seed(2)
    first, second = random_shift_rotate(x, rng=rng), random_shift_rotate(x, rng=rng)
    assert (first - second).flatten(1).abs().max(1).values.min() > 0.1  # every image gets a new draw
    torch.testing.assert_close(random_shift_rotate(x, rng=torch.Generator().manual_seed(2)), first)  # seeded
    assert first.min() >= -1 - 1e-6 and first.max() <= 1 + 1e-6

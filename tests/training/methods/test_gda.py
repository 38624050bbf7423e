"""GDA's loss against a hand computation: the ratio of synthetic pairs, their labels, their augmentation
(checked against a numpy reference of T)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genreg_core.config import FeatureConfig, GDAOptions
from genreg_core.features.extractor import build_convnet
from genreg_core.training.methods import MethodSetup
from genreg_core.training.methods.gda import GenerativeAugmentation
from tests.features.augment_reference import fit_shift_rotate

N_CLASSES = 10


def _started(digits, tiny_generator, ratio: float, augment: bool = False):
    torch.manual_seed(0)
    model = build_convnet(FeatureConfig(width=8, feature_dim=32), 1, N_CLASSES).train()
    x, y = digits.images[:8], digits.labels[:8]
    method = GenerativeAugmentation(GDAOptions(ratio=ratio, pool_per_class=1, sampler_steps=1), augment=augment)
    method.start(MethodSetup(model, x, y, N_CLASSES, torch.device("cpu"), torch.Generator().manual_seed(0),
                             tiny_generator, None, None))
    # a pool of one known pair, so every draw is that pair whatever the random picks
    method.pool_images_, method.pool_labels_ = digits.images[100:101].clone(), torch.tensor([3])
    return method, model, x, y


@pytest.mark.parametrize("ratio, n_syn", [(0.5, 4), (1.0, 8), (0.3, 2)])
def test_loss_is_the_mean_ce_over_the_real_batch_and_round_ratio_b_synthetic_pairs(ratio, n_syn, digits,
                                                                                  tiny_generator):
    method, model, x, y = _started(digits, tiny_generator, ratio)
    loss, metrics = method.step_loss(model, x, y, lr=1e-2)
    batch = torch.cat([x, digits.images[100:101].expand(n_syn, -1, -1, -1)])  # (B + round(ρB), C, H, W)
    labels = torch.cat([y, torch.full((n_syn,), 3)])  # the synthetic pairs carry their requested class
    per_sample = F.cross_entropy(model(batch), labels, reduction="none")
    assert loss.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)
    assert metrics["ce_real"] == pytest.approx(per_sample[:8].mean().item(), rel=1e-5)
    assert metrics["ce_synthetic"] == pytest.approx(per_sample[8:].mean().item(), rel=1e-5)
    wrong = F.cross_entropy(model(batch), torch.cat([y, torch.full((n_syn,), 5)]))
    assert abs(wrong.item() - loss.item()) > 1e-4  # the label matters: the check above can fail


def test_ratio_zero_is_plain_cross_entropy(digits, tiny_generator):
    method, model, x, y = _started(digits, tiny_generator, 0.0)
    loss, metrics = method.step_loss(model, x, y, lr=1e-2)
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    assert "ce_synthetic" not in metrics


def test_synthetic_pairs_are_augmented_by_t_and_the_real_batch_is_left_alone(digits, tiny_generator):
    """What the network saw, checked against a numpy reference of T: each synthetic pair is its own shift ≤ 2 px
    and rotation ≤ 10° of the pool image; the loss is the mean CE of exactly that batch."""
    method, model, x, y = _started(digits, tiny_generator, 1.0, augment=True)
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    loss, _ = method.step_loss(model, x, y, lr=1e-2)
    hook.remove()
    (batch,) = seen  # (B + S, C, H, W)
    torch.testing.assert_close(batch[:8], x)  # the method leaves the real batch alone (the loop augments it)
    pool, views = digits.images[100, 0].numpy(), batch[8:, 0].numpy()
    for view in views:
        error, _, _, degrees = fit_shift_rotate(view, pool)
        assert error < 0.01 and abs(degrees) <= 10.05
    assert sum(np.abs(view - pool).max() > 0.1 for view in views) >= 6  # T moved them (most draws move an image)
    assert all(np.abs(views[i] - views[j]).max() > 1e-3 for i in range(8) for j in range(i))  # one draw per pair
    per_sample = F.cross_entropy(model(batch), torch.cat([y, torch.full((8,), 3)]), reduction="none")
    assert loss.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)
    plain, model_plain, _, _ = _started(digits, tiny_generator, 1.0, augment=False)
    seen.clear()
    model_plain.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    plain.step_loss(model_plain, x, y, lr=1e-2)
    torch.testing.assert_close(seen[0][8:], digits.images[100:101].expand(8, -1, -1, -1))  # augment off: untouched


def test_negative_ratio_is_refused():
    with pytest.raises(ValueError, match="ratio"):
        GenerativeAugmentation(GDAOptions(ratio=-0.1))

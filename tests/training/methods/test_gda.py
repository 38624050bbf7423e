"""GDA's loss against a hand computation: the ratio of synthetic pairs, their labels, their augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genreg_core.config import FeatureConfig, GDAOptions
from genreg_core.features.extractor import build_convnet
from genreg_core.training.methods import MethodSetup
from genreg_core.training.methods.gda import GenerativeAugmentation

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


def test_synthetic_pairs_are_augmented_when_augment_is_on(digits, tiny_generator):
    plain, model, x, y = _started(digits, tiny_generator, 1.0, augment=False)
    augmented, model_b, _, _ = _started(digits, tiny_generator, 1.0, augment=True)
    loss_plain = plain.step_loss(model, x, y, lr=1e-2)[0].item()
    loss_aug = augmented.step_loss(model_b, x, y, lr=1e-2)[0].item()
    assert loss_plain != pytest.approx(loss_aug, rel=1e-4)  # same model, real batch and pool: only T(·) differs


def test_negative_ratio_is_refused():
    with pytest.raises(ValueError, match="ratio"):
        GenerativeAugmentation(GDAOptions(ratio=-0.1))

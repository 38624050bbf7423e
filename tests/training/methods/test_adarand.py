"""AdaRand against the official formulas (yshinya6/adarand) and independent computations."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from genreg_core.config import TrainConfig
from genreg_core.data.datasets import per_class_subset
from genreg_core.training.loop import TrainCallbacks, build_classifier, train_classifier
from genreg_core.training.methods import MethodSetup, make_method
from genreg_core.training.methods.adarand import AdaRand, prior_loss


def _started(digits, split, config: TrainConfig, total_steps: int | None = None) -> tuple[AdaRand, MethodSetup]:
    train = per_class_subset(digits.labels, split.train, config.per_class, config.seed)
    model = build_classifier(digits, split, config, torch.device("cpu"))
    setup = MethodSetup(model, digits.images[train], digits.labels[train], 10, torch.device("cpu"),
                        torch.Generator().manual_seed(0), total_steps=total_steps)
    method = make_method("adarand", config)
    method.start(setup)
    return method, setup


def test_prior_loss_equals_hand_computed_official_td_loss():
    # td_loss: mean_k (cos(μ_k, μ̄_k) − 1)² + mean over the K(K−1) off-diagonal entries of cos(μ_k, μ_l)²
    mu = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    mu_bar = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    # cos(μ, μ̄) per class: 1/√2, 1/√2, 0  ->  follow = (2 (1 − 1/√2)² + 1) / 3
    follow_hand = (2 * (1 - 1 / math.sqrt(2)) ** 2 + 1) / 3
    # cos(μ_0, μ_1) = 1/√2, cos(μ_0, μ_2) = 0, cos(μ_1, μ_2) = 1/√2  ->  spread = 2 (½ + 0 + ½) / 6
    spread_hand = 2 * (0.5 + 0.0 + 0.5) / 6
    follow, spread = prior_loss(mu, mu_bar)
    assert follow.item() == pytest.approx(follow_hand, abs=1e-6)
    assert spread.item() == pytest.approx(spread_hand, abs=1e-6)
    assert (follow + spread).item() == pytest.approx(0.7238576, abs=1e-6)


def test_references_are_drawn_from_each_class_gaussian(digits, digits_split):
    method, _ = _started(digits, digits_split, TrainConfig.tiny("adarand"))
    d = method.mu_.shape[1]
    with torch.no_grad():
        method.mu_.copy_(torch.arange(10, dtype=torch.float32)[:, None].expand(10, d) * 3)  # μ_k = 3k
    method.sigma_ = torch.linspace(0.5, 2.0, d).expand(10, d) * torch.arange(1, 11)[:, None] / 10
    labels = torch.tensor([2, 7]).repeat_interleave(20_000)
    z = method.sample_references(labels, d)  # (40000, d)
    for k, rows in ((2, slice(0, 20_000)), (7, slice(20_000, None))):
        mean, std = z[rows].mean(0), z[rows].std(0)
        sigma = method.sigma_[k]
        assert torch.all((mean - 3 * k).abs() < 5 * sigma / math.sqrt(20_000))  # 5 standard errors
        assert torch.allclose(std, sigma, rtol=0.03)
        skew = ((z[rows] - 3 * k) / sigma).pow(3).mean(0)
        assert skew.abs().max() < 0.1  # symmetric, as a Gaussian


def test_initial_mu_sigma_equal_class_statistics_of_the_initial_features(digits, digits_split):
    config = replace(TrainConfig.tiny("adarand"), init="pretrained", width=32, feature_dim=128)
    method, setup = _started(digits, digits_split, config)
    # independent: a copy of the classifier in train mode (BatchNorm statistics of the whole subset), numpy stats
    net = copy.deepcopy(setup.model).train()
    with torch.no_grad():
        feats = net.backbone(setup.images).numpy().astype(np.float64)  # (N, d)
    labels = setup.labels.numpy()
    mean = np.stack([feats[labels == k].mean(0) for k in range(10)])
    std = np.stack([feats[labels == k].std(0) for k in range(10)])  # population std, as np.std
    np.testing.assert_allclose(method.mu_.detach().numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(method.sigma_.numpy(), std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(method.mu_bar_.numpy(), mean, rtol=1e-4, atol=1e-5)  # official: running_mu = μ


def test_sigma_stays_fixed_while_mu_moves_during_training(digits, digits_split):
    snapshots = []
    config = replace(TrainConfig.tiny("adarand"), epochs=3)
    result = train_classifier(digits, digits_split, config,
                              callbacks=TrainCallbacks(on_snapshot=lambda e, s: snapshots.append(s)))
    assert result.status == "finished" and len(snapshots) == 3
    # independent: the run's initial classifier and subset, per-class statistics of its features in numpy
    net = build_classifier(digits, digits_split, config, torch.device("cpu")).train()
    rows = per_class_subset(digits.labels, digits_split.train, config.per_class, config.seed)
    with torch.no_grad():
        feats = net.backbone(digits.images[rows]).numpy().astype(np.float64)  # (N, d)
    labels = digits.labels[rows].numpy()
    sigma = np.stack([feats[labels == k].std(0) for k in range(10)])
    mean = np.stack([feats[labels == k].mean(0) for k in range(10)])
    for snap in snapshots:
        np.testing.assert_allclose(snap["sigma"].numpy(), sigma, rtol=1e-4, atol=1e-5)
    assert np.abs(snapshots[-1]["mu"].numpy() - mean).max() > 1e-3


def test_prior_learning_rate_follows_the_official_cosine_schedule(digits, digits_split):
    total = 40
    method, _ = _started(digits, digits_split, TrainConfig.tiny("adarand"), total_steps=total)
    lrs = [method.update_prior()["prior_lr"] for _ in range(total)]
    peak = method.prior_lr
    expected = [peak * math.cos(math.pi * 7 / 16 * s / total) for s in range(total)]  # CosineAnnealingLR, 7/16
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert method.prior_optimizer_.param_groups[0]["lr"] == pytest.approx(expected[-1])
    assert lrs[0] == peak and lrs[-1] > 0.19 * peak  # never reaches 0: cos(7π/16) ≈ 0.195

"""The self-supervised backbone: NT-Xent, views, the shipped weights, fine-tuning from them, on-demand cache."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genreg_core.config import BackboneConfig, TrainConfig
from genreg_core.data.datasets import ImageDataset, split_dataset
from genreg_core.features import backbone as backbone_module
from genreg_core.features.augment import random_erase, random_view
from genreg_core.features.backbone import (
    DEFAULT_BACKBONE_DIR,
    WEIGHTS_FILE,
    get_backbone,
    load_backbone,
    nt_xent,
    pretrain_backbone,
)
from genreg_core.features.extractor import data_fingerprint, extract_features
from genreg_core.training.loop import build_classifier


def test_nt_xent_equals_a_loop_over_anchors():
    torch.manual_seed(0)
    z1, z2, tau = torch.randn(4, 3), torch.randn(4, 3), 0.5
    z = torch.cat([z1, z2]).numpy().astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(8):
        positive = (i + 4) % 8
        logits = [z[i] @ z[k] / tau for k in range(8) if k != i]
        losses.append(-(z[i] @ z[positive] / tau) + math.log(sum(math.exp(v) for v in logits)))
    assert nt_xent(z1, z2, tau).item() == pytest.approx(np.mean(losses), rel=1e-5)
    assert nt_xent(z1, z1.clone(), tau) < nt_xent(z1, z2, tau)  # identical views: lower loss


def test_views_are_seeded_in_range_and_erase_a_square():
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    a, b = random_view(x, torch.Generator().manual_seed(3)), random_view(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6
    erased = random_erase(torch.ones(50, 1, 16, 16), 4, p=1.0, rng=torch.Generator().manual_seed(0))
    assert ((erased == -1).sum(dim=(1, 2, 3)) == 16).all()  # exactly one 4×4 square per image


def test_shipped_backbone_loads_the_safetensors_and_is_not_random(digits, digits_split):
    shipped = load_backbone()
    raw = load_file(DEFAULT_BACKBONE_DIR / WEIGHTS_FILE)
    assert set(shipped.state_dict) == set(raw) and all(torch.equal(shipped.state_dict[k], raw[k]) for k in raw)
    assert shipped.provenance["pool_fingerprint"] == data_fingerprint(digits.images[digits_split.train])
    assert "command" in shipped.provenance and shipped.provenance["epochs"] == shipped.config.epochs
    config = replace(TrainConfig.tiny(), init="pretrained", width=32, feature_dim=128)
    pretrained = build_classifier(digits, digits_split, config, torch.device("cpu"))
    scratch = build_classifier(digits, digits_split, replace(config, init="scratch"), torch.device("cpu"))
    for key, value in pretrained.backbone.state_dict().items():
        assert torch.equal(value, raw[key])  # every weight and BatchNorm buffer from the file
    assert torch.equal(pretrained.head.weight, scratch.head.weight)  # the head is fresh either way (same seed)
    x = digits.images[digits_split.test[:64]]
    f_pre, f_scratch = extract_features(pretrained, x), extract_features(scratch, x)
    assert np.abs(f_pre - f_scratch).mean() > 0.1 * np.abs(f_scratch).mean()


def test_cli_train_records_the_init_on_the_run(capsys, monkeypatch, tmp_path):
    import json

    from genreg_core.cli.main import main
    from genreg_core.runs.store import RunStore

    monkeypatch.setenv("GENREG_HOME", str(tmp_path))  # a run store of its own: other tests count runs
    args = ["train", "--method", "ce", "--per-class", "5", "--epochs", "1", "--init", "pretrained", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["test_accuracy"] is not None
    run = RunStore().get_run(payload["run_id"])
    assert run.data.params["train.init"] == "pretrained" and run.data.tags["genreg.init"] == "pretrained"


def test_unknown_init_is_rejected(digits, digits_split):
    from genreg_core.training.loop import train_classifier

    with pytest.raises(ValueError, match="unknown init"):
        train_classifier(digits, digits_split, replace(TrainConfig.tiny(), init="imagenet"))


def test_backbone_for_other_data_is_pretrained_once_and_cached(digits, tmp_path, monkeypatch):
    small = ImageDataset(digits.images[:300], digits.labels[:300], digits.class_names, "digits-300")
    split = split_dataset(small.labels, seed=0)
    config = BackboneConfig(width=4, feature_dim=8, epochs=2, batch_size=32)
    first = get_backbone(small, split, 4, 8, tmp_path, config)
    assert first.config.width == 4 and first.provenance["n_pool"] == len(split.train)
    assert first.state_dict["3.0.weight"].shape == (8, 16, 3, 3)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached backbone should have been reused")

    monkeypatch.setattr(backbone_module, "pretrain_backbone", no_training)
    second = get_backbone(small, split, 4, 8, tmp_path, config)
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)


def test_pretraining_lowers_the_contrastive_loss(digits, digits_split):
    losses = []
    pretrain_backbone(digits.images[digits_split.train[:256]], BackboneConfig(width=8, feature_dim=16, epochs=4,
                                                                              batch_size=64),
                      on_epoch=lambda e, m: losses.append(m["loss"]))
    assert len(losses) == 4 and losses[-1] < losses[0]

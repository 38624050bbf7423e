"""No model ever sees the fixed test set: the shipped generator, feature extractor and backbone, an own generator,
and every classifier run of every seed of the grid's protocol."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.reproduce import grid_of
from genreg_core.config import DataConfig, FeatureConfig, TrainConfig, config_from_dict
from genreg_core.data.datasets import load_dataset, load_digits_dataset, per_class_subset, split_dataset
from genreg_core.diffusion.model import load_generator
from genreg_core.features.backbone import get_backbone, load_backbone
from genreg_core.features.extractor import build_convnet, data_fingerprint, load_feature_extractor
from genreg_core.lab import Lab, real_subset
from genreg_core.runs.grid import cell_spec, expand_cells
from genreg_core.training.generator_regime import get_own_generator
from genreg_core.training.loop import train_classifier

ASSETS = Path(__file__).resolve().parents[2] / "genreg_core" / "assets"
SHIPPED = {"generator": ASSETS / "digits-ddpm" / "genreg.json", "features": ASSETS / "digits-features" / "config.json",
           "backbone": ASSETS / "digits-ssl" / "backbone.json"}
FASHION_SHIPPED = {"generator": ASSETS / "fashion-mnist-ddpm" / "genreg.json",
                   "early generator": ASSETS / "fashion-mnist-ddpm-early" / "genreg.json",
                   "features": ASSETS / "fashion-mnist-features" / "config.json",
                   "backbone": ASSETS / "fashion-mnist-ssl" / "backbone.json"}
SEEDS = range(10)


def _fixed_split(digits):
    config = DataConfig()  # the lab's default: split seed 0, the split every grid seed uses
    return split_dataset(digits.labels, config.split_seed, config.val_fraction, config.test_fraction)


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_shipped_models_trained_on_the_train_split_only(model, digits):
    meta = json.loads(SHIPPED[model].read_text())
    data = config_from_dict(DataConfig, meta["data_config"])
    recorded = split_dataset(digits.labels, data.split_seed, data.val_fraction, data.test_fraction)
    trained = np.asarray(meta["train_indices"])
    assert np.array_equal(trained, recorded.train)
    fixed = _fixed_split(digits)
    assert not set(trained) & set(fixed.test) and not set(trained) & set(fixed.val)


@pytest.fixture(scope="module")
def fashion():
    return load_dataset(DataConfig(name="fashion-mnist", image_size=28))


@pytest.mark.parametrize("model", sorted(FASHION_SHIPPED))
def test_shipped_fashion_models_trained_on_the_pool_train_split_only(model, fashion):
    """Fashion-MNIST's shipped models trained on the pool's train split: never its val or test rows, and never the
    fixed test set, which is a different file (the official test images) and disjoint from the pool."""
    meta = json.loads(FASHION_SHIPPED[model].read_text())
    data = config_from_dict(DataConfig, meta["data_config"])
    assert data == DataConfig(name="fashion-mnist", image_size=28)  # the lab's default: the one fixed split
    recorded = split_dataset(fashion.labels, data.split_seed, data.val_fraction, data.test_fraction)
    assert np.array_equal(np.asarray(meta["train_indices"]), recorded.train)
    assert fashion.held_out is not None and len(fashion.held_out.labels) == 3000


def test_the_fashion_backbone_pool_is_its_train_rows(fashion):
    meta = json.loads(FASHION_SHIPPED["backbone"].read_text())
    assert meta["pool_fingerprint"] == data_fingerprint(fashion.images[torch.as_tensor(meta["train_indices"])])


def _denoising_gap(generator, dataset, split) -> dict[str, float]:
    """The denoising loss on 200 rows of each split (same noise, same t): train lower than val and test, which the
    generator treats alike (it saw neither)."""
    losses = {}
    for name in ("train", "val", "test"):
        rows = torch.as_tensor(getattr(split, name)[:200])
        x0, y = dataset.images[rows], dataset.labels[rows]
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        total = 0.0
        for t in (50, 200):
            ab = generator.alpha_bar(t)
            x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * noise
            with torch.no_grad():
                eps = generator.unet(x_t, torch.full((len(rows),), t), class_labels=y).sample
            total += float((eps - noise).pow(2).mean())
        losses[name] = total
    gap = min(losses["val"], losses["test"]) - losses["train"]
    assert gap > 0 and abs(losses["val"] - losses["test"]) < gap / 2, losses
    return losses


def test_the_backbone_pool_is_those_rows(digits):
    """The backbone recorded the content hash of its pool when it was trained: it is exactly the recorded rows."""
    backbone = load_backbone()
    rows = np.asarray(backbone.provenance["train_indices"])
    assert backbone.provenance["pool_fingerprint"] == data_fingerprint(digits.images[rows])


def test_the_generator_fits_its_train_rows_better_than_unseen_val_and_test(digits):
    """Corroboration from the weights: the denoising loss on train rows is lower than on val and test, which the
    generator treats alike (it saw neither). Same noise, same t, same number of images per split."""
    assert _denoising_gap(load_generator(), digits, _fixed_split(digits))


def test_the_feature_extractor_fits_its_train_rows_better_than_val_and_test(digits):
    extractor = load_feature_extractor()
    split = _fixed_split(digits)
    loss = {}
    for name in ("train", "val", "test"):
        rows = torch.as_tensor(getattr(split, name))
        with torch.no_grad():
            loss[name] = float(F.cross_entropy(extractor.model(digits.images[rows]), digits.labels[rows]))
    gap = min(loss["val"], loss["test"]) - loss["train"]
    assert gap > 0 and abs(loss["val"] - loss["test"]) < gap / 2, loss


def grid_split(digits, seed: int):
    """The split the reproduction grid's cells of ``seed`` train, select and test on (through ``genreg grid``)."""
    args = argparse.Namespace(methods=["ce", "mgr"], settings=[5, 25], seeds=[seed], inits=["scratch", "pretrained"],
                              regimes=["pool", "own"], epochs=30, dataset="digits", set=[], generator=None,
                              preset="default", device="cpu")
    grid = grid_of(args)
    configs = [cell_spec(grid, cell).data for cell in expand_cells(grid)]
    assert all(c == configs[0] for c in configs)  # every cell of a seed on one data config
    data = configs[0]
    return split_dataset(digits.labels, data.split_seed, data.val_fraction, data.test_fraction)


def _lab(digits, split, generator=None) -> Lab:
    return Lab(DataConfig(), digits, split, generator, None, torch.device("cpu"))


def test_every_seed_tests_on_the_same_images_no_model_saw(digits, digits_split, tiny_generator):
    fixed = _fixed_split(digits)
    lab = _lab(digits, fixed)
    seen = {name: set(json.loads(path.read_text())["train_indices"]) for name, path in SHIPPED.items()}
    test = set(fixed.test)
    for seed in SEEDS:
        split = grid_split(digits, seed)
        assert np.array_equal(split.test, fixed.test) and np.array_equal(split.val, fixed.val)
        assert not set(per_class_subset(digits.labels, split.train, 25, seed)) & test  # the run's (own) rows
        assert get_backbone(digits, split, 32, 128, "/nonexistent").provenance["train_indices"] == \
            sorted(seen["backbone"])  # pretrained runs start from the shipped backbone
        assert set(real_subset(lab, 15, seed, source="test")) <= test  # reverse-step originals: never seen
        assert not set(real_subset(lab, 15, seed, source="test")) & set().union(*seen.values())
    config = replace(TrainConfig.tiny("mgr"), epochs=1)
    for seed in (0, 1):
        for budget in ("within", "extra"):
            run = replace(config, seed=seed, meta_val_budget=budget)
            result = train_classifier(digits, grid_split(digits, seed), run, tiny_generator)
            assert not (set(result.train_indices) | set(result.meta_indices)) & test


def test_an_own_generator_trains_on_the_runs_rows_only(digits):
    split = _fixed_split(digits)
    config = replace(TrainConfig.tiny("gda"), per_class=3, seed=4, generator_regime="own")
    generator = get_own_generator(digits, split, DataConfig(), config)
    rows = generator.metadata["train_rows"]
    assert rows == per_class_subset(digits.labels, split.train, 3, 4).tolist()
    assert not set(rows) & set(split.test) and not set(rows) & set(split.val)
    assert generator.metadata["data_config"] == asdict(DataConfig())


def test_fixture_split_is_the_fixed_split(digits, digits_split):
    assert np.array_equal(digits_split.test, _fixed_split(load_digits_dataset(16)).test)


def test_a_fashion_run_is_scored_on_the_fixed_held_out_test_set(fashion):
    """Fashion-MNIST runs are scored on the 3,000 shipped test images, not the pool's test rows: the reported
    accuracy is the returned model's own argmax accuracy on ``held_out`` (numpy), and not on the pool's test part."""
    data = DataConfig(name="fashion-mnist", image_size=28)
    split = split_dataset(fashion.labels, data.split_seed, data.val_fraction, data.test_fraction)
    config = replace(TrainConfig.tiny(), per_class=40, epochs=1)
    result = train_classifier(fashion, split, config)
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), 1, fashion.n_classes)
    model.load_state_dict(result.state_dict)
    model.eval()

    def argmax_accuracy(images, labels) -> float:
        with torch.no_grad():
            predicted = model(images).numpy().argmax(axis=1)
        return float(np.mean(predicted == labels.numpy()))

    held_out = argmax_accuracy(fashion.held_out.images, fashion.held_out.labels)
    pool_test = argmax_accuracy(fashion.images[split.test], fashion.labels[split.test])
    assert result.test_accuracy == pytest.approx(held_out, abs=1e-9)
    assert held_out != pytest.approx(pool_test, abs=1e-9)  # 3,000 vs 1,000 images: the two sets tell apart

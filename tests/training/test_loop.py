"""The training loop: protocol, callbacks, stopping, errors and snapshots."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genreg_core.config import FeatureConfig, TrainConfig
from genreg_core.data.datasets import ImageDataset
from genreg_core.features.extractor import build_convnet
from genreg_core.training.loop import TrainCallbacks, split_meta_validation, train_classifier

STEP_KEYS = {"train_loss", "ce_loss", "feature_norm", "head_grad_norm", "lr", "epoch"}
EPOCH_KEYS = STEP_KEYS | {"val_loss", "val_accuracy", "seconds"}
TEST_KEYS = {"test_loss", "test_accuracy"}


def test_reports_test_accuracy_at_best_validation_loss_epoch(digits, digits_split):
    steps, epochs = [], []
    callbacks = TrainCallbacks(on_step=lambda s, m: steps.append((s, m)), on_epoch=lambda e, m: epochs.append(e))
    result = train_classifier(digits, digits_split, replace(TrainConfig.tiny(), epochs=4), callbacks=callbacks)
    assert result.status == "finished" and len(result.history) == 4 and epochs == [1, 2, 3, 4]
    val_losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    assert result.best_val_loss == min(val_losses)
    assert result.test_accuracy == result.history[result.best_epoch - 1]["test_accuracy"]
    assert all(EPOCH_KEYS <= set(row) for row in result.history)
    assert [TEST_KEYS <= set(row) for row in result.history] == [e == result.best_epoch for e in range(1, 5)]
    assert [s for s, _ in steps] == list(range(1, 4 * 4 + 1))  # 50 images, batch 16: 4 steps per epoch
    assert STEP_KEYS <= set(steps[0][1]) and all(np.isfinite(list(m.values())).all() for _, m in steps)
    assert len(result.train_indices) == 50 and set(result.train_indices) <= set(digits_split.train)
    assert all(v.device.type == "cpu" for v in result.state_dict.values())


def test_the_test_set_is_read_once_after_training_by_the_best_validation_weights(digits, digits_split):
    """No epoch's live metrics hold a test number; afterwards the best epoch's row does, and the returned weights
    are that epoch's: their own (numpy) validation loss is the best epoch's, not the last's, and their argmax
    accuracy on the test split is the reported one."""
    config = replace(TrainConfig.tiny(), epochs=10, lr=0.03, augment=False, batch_size=50)  # val loss turns up
    live = []
    result = train_classifier(digits, digits_split, config, callbacks=TrainCallbacks(
        on_epoch=lambda e, m: live.append(set(m))))
    assert result.best_epoch < config.epochs  # the fixed seed's run: best epoch 8 of 10
    assert len(live) == 10 and not any(TEST_KEYS & keys for keys in live)
    assert [TEST_KEYS <= set(row) for row in result.history] == [e == result.best_epoch for e in range(1, 11)]

    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), 1, digits.n_classes)
    model.load_state_dict(result.state_dict)
    model.eval()

    def logits(rows) -> np.ndarray:
        with torch.no_grad():
            return model(digits.images[rows]).numpy().astype(np.float64)

    val, y_val = logits(digits_split.val), digits.labels[digits_split.val].numpy()
    shifted = val - val.max(axis=1, keepdims=True)
    nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y_val)), y_val]
    assert nll.mean() == pytest.approx(result.best_val_loss, rel=1e-4)
    assert nll.mean() != pytest.approx(result.history[-1]["val_loss"], rel=1e-3)
    test_accuracy = np.mean(logits(digits_split.test).argmax(axis=1) == digits.labels[digits_split.test].numpy())
    assert result.test_accuracy == pytest.approx(test_accuracy, abs=1e-9)


def test_same_seed_same_run(digits, digits_split):
    config = replace(TrainConfig.tiny(), epochs=1)
    first = train_classifier(digits, digits_split, config)
    second = train_classifier(digits, digits_split, config)
    assert [r["val_loss"] for r in first.history] == [r["val_loss"] for r in second.history]


def test_should_stop_is_honoured_within_one_step(digits, digits_split):
    steps = []
    callbacks = TrainCallbacks(on_step=lambda s, m: steps.append(s), should_stop=lambda: len(steps) >= 6)
    result = train_classifier(digits, digits_split, replace(TrainConfig.tiny(), epochs=5), callbacks=callbacks)
    assert result.status == "stopped"
    assert steps == [1, 2, 3, 4, 5, 6]
    assert len(result.history) == 1 and result.best_epoch == 1  # epoch 1 (4 steps) completed, epoch 2 did not
    assert result.test_accuracy == result.history[0]["test_accuracy"]


def test_stop_before_any_epoch_keeps_no_result(digits, digits_split):
    stop_now = TrainCallbacks(should_stop=lambda: True)
    result = train_classifier(digits, digits_split, TrainConfig.tiny(), callbacks=stop_now)
    assert result.status == "stopped" and result.history == [] and result.test_accuracy is None
    assert result.best_epoch is None and result.state_dict


def test_non_finite_loss_raises_floating_point_error(digits, digits_split):
    broken = ImageDataset(torch.full_like(digits.images, float("nan")), digits.labels, digits.class_names, "nan")
    with pytest.raises(FloatingPointError, match="step 1 of method 'ce'"):
        train_classifier(broken, digits_split, TrainConfig.tiny())


@pytest.mark.parametrize("method", ["gda", "mgr", "mgr+adarand", "semantic", "gssl"])
def test_methods_needing_a_generator_raise_without_one(method, digits, digits_split):
    with pytest.raises(ValueError, match="needs a generator"):
        train_classifier(digits, digits_split, TrainConfig.tiny(method))


def test_unknown_method_and_bad_config_raise(digits, digits_split):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        train_classifier(digits, digits_split, replace(TrainConfig.tiny(), method="nope"))
    with pytest.raises(ValueError, match="learning rate"):
        train_classifier(digits, digits_split, replace(TrainConfig.tiny(), lr=0.0))


@pytest.mark.parametrize("method", ["gda", "randreg", "adarand", "mgr+adarand"])
def test_every_method_trains_through_the_loop(method, digits, digits_split, tiny_generator):
    result = train_classifier(digits, digits_split, replace(TrainConfig.tiny(method), epochs=1), tiny_generator)
    assert result.status == "finished"
    assert all(np.isfinite(v) for v in result.history[0].values())


def test_snapshots_have_documented_keys_and_shapes(digits, digits_split, tiny_generator):
    config = replace(TrainConfig.tiny("mgr+adarand"), epochs=2)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    result = train_classifier(digits, digits_split, config, tiny_generator,
                              callbacks=TrainCallbacks(on_snapshot=lambda e, s: snapshots.update({e: s})))
    assert sorted(snapshots) == [1, 2]
    snap = snapshots[2]
    k, d, s = 10, config.feature_dim, config.mgr.synthetic_batch
    steps_per_epoch = -(-len(result.train_indices) // config.batch_size)
    shapes = {"mu": (k, d), "mu_bar": (k, d), "sigma": (k, d), "references": (k * 4, d), "reference_labels": (k * 4,),
              "probe_features": (len(snap["probe_labels"]), d), "latents": (2, s, 1, 16, 16),
              "sample_images": (s, 1, 16, 16), "sample_classes": (s,), "influence": (s,),
              "val_loss_before": (steps_per_epoch,), "val_loss_after": (steps_per_epoch,)}
    assert {name: tuple(snap[name].shape) for name in shapes} == shapes
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in snap.values())
    assert len(result.meta_indices) == 10 and not set(result.meta_indices) & set(result.train_indices)


def test_split_meta_validation_holds_out_at_least_one_per_class():
    labels = np.repeat(np.arange(3), 5)
    train, meta = split_meta_validation(labels, np.arange(15), fraction=0.2, seed=0)
    assert sorted(np.concatenate([train, meta]).tolist()) == list(range(15))
    assert np.bincount(labels[meta]).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="per_class ≥ 2"):
        split_meta_validation(labels, np.array([0, 5, 6, 10, 11]), fraction=0.2)


def _permuted_test_labels(dataset: ImageDataset, test: np.ndarray, seed: int = 0) -> ImageDataset:
    """The same dataset with the labels of the test rows shuffled among themselves (every other row unchanged)."""
    labels = dataset.labels.clone()
    perm = np.random.default_rng(seed).permutation(test)
    labels[torch.as_tensor(test)] = dataset.labels[torch.as_tensor(perm)]
    assert not torch.equal(labels, dataset.labels)
    return ImageDataset(dataset.images, labels, dataset.class_names, dataset.name)


def test_best_epoch_is_chosen_without_test_labels(digits, digits_split):
    """Model selection reads validation only: permuting the test labels changes no choice and no val number."""
    config = replace(TrainConfig.tiny(), epochs=4)
    real = train_classifier(digits, digits_split, config)
    permuted = train_classifier(_permuted_test_labels(digits, digits_split.test), digits_split, config)
    assert permuted.best_epoch == real.best_epoch and permuted.best_val_loss == real.best_val_loss
    assert [r["val_accuracy"] for r in permuted.history] == [r["val_accuracy"] for r in real.history]
    assert [r.get("test_accuracy") for r in permuted.history] != [r.get("test_accuracy") for r in real.history]


def test_extra_meta_validation_keeps_the_ce_budget(digits, digits_split, tiny_generator):
    """meta_val_budget="extra": MGR's CE sees CE's N per class; B_val comes from the rest of the train split."""
    config = replace(TrainConfig.tiny("mgr"), epochs=1)
    ce = train_classifier(digits, digits_split, replace(config, method="ce"))
    within = train_classifier(digits, digits_split, config, tiny_generator)
    extra = train_classifier(digits, digits_split, replace(config, meta_val_budget="extra"), tiny_generator)
    labels = digits.labels.numpy()
    assert np.array_equal(extra.train_indices, ce.train_indices)  # the same N = 5 per class as CE
    assert np.bincount(labels[extra.meta_indices]).tolist() == [1] * 10  # round(0.2 · 5) = 1 per class
    assert not set(extra.meta_indices) & set(ce.train_indices) and set(extra.meta_indices) <= set(digits_split.train)
    assert np.bincount(labels[within.train_indices]).tolist() == [4] * 10  # within: 4 + 1 of the same 5
    assert set(within.train_indices) | set(within.meta_indices) == set(ce.train_indices)
    with pytest.raises(ValueError, match="meta_val_budget"):
        train_classifier(digits, digits_split, replace(config, meta_val_budget="more"), tiny_generator)

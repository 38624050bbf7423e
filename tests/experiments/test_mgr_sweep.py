"""MGR's λ sweep chooses its point on validation only."""

from dataclasses import replace

import numpy as np
import torch

from experiments.mgr_sweep import choose_point, run_point
from genreg_core.config import TrainConfig
from genreg_core.data.datasets import ImageDataset


def _sweep(dataset, split, generator) -> list[dict]:
    # large enough to learn something (a constant prediction's test accuracy is blind to permuted labels); three
    # epochs, so the best epoch is a choice too
    base = replace(TrainConfig.tiny("mgr"), per_class=10, epochs=3, lr=1e-2)
    return [run_point(dataset, split, generator, "mgr", "mean", weight, 0, base) for weight in (0.0, 30.0)]


def test_choice_is_unchanged_when_the_test_labels_are_permuted(digits, digits_split, tiny_generator):
    rows = _sweep(digits, digits_split, tiny_generator)
    labels = digits.labels.clone()
    test = torch.as_tensor(digits_split.test)
    labels[test] = digits.labels[torch.as_tensor(np.random.default_rng(0).permutation(digits_split.test))]
    permuted = _sweep(ImageDataset(digits.images, labels, digits.class_names, digits.name), digits_split,
                      tiny_generator)
    assert not torch.equal(labels, digits.labels)
    assert choose_point(permuted) == choose_point(rows)
    for a, b in zip(rows, permuted):  # nothing validation-side moved: the best epoch and its numbers are the same
        assert (a["best_epoch"], a["val_accuracy"], a["best_val_loss"]) == (b["best_epoch"], b["val_accuracy"],
                                                                            b["best_val_loss"])
    assert any(a["test_accuracy"] != b["test_accuracy"] for a, b in zip(rows, permuted))  # the permutation bites


def test_choice_follows_validation_not_test():
    rows = [{"method": "mgr", "reduction": "mean", "weight": 1.0, "val_accuracy": 0.8, "best_val_loss": 0.5,
             "test_accuracy": 0.6},
            {"method": "mgr", "reduction": "sum", "weight": 0.03, "val_accuracy": 0.7, "best_val_loss": 0.4,
             "test_accuracy": 0.9},
            {"method": "ce", "reduction": "mean", "weight": 0.0, "val_accuracy": 0.99, "best_val_loss": 0.1,
             "test_accuracy": 0.99}]
    assert choose_point(rows) == ("mean", 1.0)

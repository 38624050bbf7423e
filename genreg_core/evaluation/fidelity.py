"""Class fidelity of generated samples, judged by a classifier that knows nothing of genreg.

A scikit-learn logistic regression is fitted on the real training pixels; the fidelity of a generator is
the share of its samples that this outside classifier assigns to the class they were generated for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FidelityResult:
    overall: float  # share of samples labelled with their requested class
    per_class: list[float]  # the same share within each requested class
    reference_test_accuracy: float | None  # the outside classifier's accuracy on real test images


def class_fidelity(train_images: torch.Tensor, train_labels: torch.Tensor, samples: torch.Tensor,
                   sample_labels: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor] | None = None,
                   seed: int = 0) -> FidelityResult:
    """Fit logistic regression on real pixels and score ``samples`` against their requested labels."""
    from sklearn.linear_model import LogisticRegression

    def flat(x: torch.Tensor) -> np.ndarray:
        return x.reshape(len(x), -1).numpy()

    clf = LogisticRegression(max_iter=3000, C=0.5, random_state=seed).fit(flat(train_images), train_labels.numpy())
    predicted = clf.predict(flat(samples))
    wanted = sample_labels.numpy()
    per_class = [float((predicted[wanted == c] == c).mean()) for c in np.unique(wanted)]
    reference = float(clf.score(flat(test[0]), test[1].numpy())) if test is not None else None
    return FidelityResult(float((predicted == wanted).mean()), per_class, reference)

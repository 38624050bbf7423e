"""Replay of AdaRand's reference vectors: how the class-conditional priors and the features move in training.

Reads the per-epoch snapshots of an AdaRand run (``mu``, ``mu_bar``, ``sigma``, ``references``,
``probe_features`` of a fixed probe set) and puts every epoch into one shared PCA frame, so that the
movement between epochs is real movement, not a change of axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from genreg_core.evaluation.projection import Projector
from genreg_core.training.methods.adarand import prior_loss

REQUIRED = ("mu", "mu_bar", "references", "reference_labels", "probe_features", "probe_labels")


@dataclass
class ReferenceReplay:
    epochs: list[int]  # 1-based epoch of each snapshot
    probe_xy: np.ndarray  # (E, P, 2) probe features
    probe_labels: np.ndarray  # (P,)
    mu_xy: np.ndarray  # (E, K, 2) prior means μ
    mu_bar_xy: np.ndarray  # (E, K, 2) running class means μ̄
    reference_xy: np.ndarray  # (E, R, 2) sampled references z ~ N(μ_y, σ_y²)
    reference_labels: np.ndarray  # (R,)
    stats: list[dict[str, float]]  # per epoch: the prior's two terms, norms, distances, nearest-μ accuracy


def _epoch_stats(snap: dict[str, torch.Tensor]) -> dict[str, float]:
    mu, mu_bar = snap["mu"].float(), snap["mu_bar"].float()
    feats, labels = snap["probe_features"].float(), snap["probe_labels"].long()
    follow, spread = prior_loss(mu, mu_bar)
    nearest = (F.normalize(feats, dim=1) @ F.normalize(mu, dim=1).T).argmax(1)
    return {
        "prior_follow": float(follow), "prior_spread": float(spread),
        "mu_norm": float(mu.norm(dim=1).mean()), "feature_norm": float(feats.norm(dim=1).mean()),
        "feature_to_mu": float((feats - mu[labels]).norm(dim=1).mean()),
        "nearest_mu_accuracy": float((nearest == labels).float().mean()),
    }


def replay_references(snapshots: list[dict[str, torch.Tensor]], random_state: int = 0) -> ReferenceReplay:
    """Project every epoch's μ, μ̄, references and probe features into one PCA frame; raise if not AdaRand."""
    snaps = [s for s in snapshots if all(k in s for k in REQUIRED)]
    if not snaps:
        raise ValueError("these snapshots hold no AdaRand reference vectors (pick an AdaRand run with an epoch done)")
    parts = ("probe_features", "mu", "mu_bar", "references")
    stacked = np.concatenate([snap[p].float().numpy() for snap in snaps for p in parts])
    projector = Projector("pca", 2, random_state).fit(stacked)

    def xy(part: str) -> np.ndarray:
        return np.stack([projector.transform(snap[part].float().numpy()) for snap in snaps])

    return ReferenceReplay(
        epochs=list(range(1, len(snaps) + 1)), probe_xy=xy("probe_features"),
        probe_labels=snaps[0]["probe_labels"].numpy(), mu_xy=xy("mu"), mu_bar_xy=xy("mu_bar"),
        reference_xy=xy("references"), reference_labels=snaps[0]["reference_labels"].numpy(),
        stats=[_epoch_stats(s) for s in snaps])

"""Sweep of the reverse start step t: how reconstructions drift into the modes of the real data.

Reproduces the analysis of "On the Limitation of Diffusion Models for Synthesizing Training Datasets"
(Yamaguchi & Fukuda, 2023): N real training images are noised to each t with the *same* noise draw ε
(x_t = sqrt(ᾱ_t)·x_0 + sqrt(1−ᾱ_t)·ε, so the curves differ only through t) and reconstructed; each t
is measured against a real reference set — the originals themselves ("same") or as many other training
images per class ("disjoint", so t = 0 is not a perfect match by construction) — in the feature space of
the classifier, the self-supervised backbone or a fixed random network (``genreg_core.analysis.embedding``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from genreg_core.analysis.embedding import EMBEDDINGS, embed, train_embedding
from genreg_core.config import FeatureConfig, SamplerConfig
from genreg_core.diffusion.sampling import reconstruct_many
from genreg_core.evaluation.metrics import distribution_metrics, uncovered_by_class
from genreg_core.evaluation.projection import Projector
from genreg_core.features.extractor import accuracy, predict_labels, train_feature_extractor
from genreg_core.lab import REFERENCES, SOURCES, Lab, real_subset, reference_subset
from genreg_core.lru import LRUCache

SweepProgress = Callable[[int, int, str], None]
_CACHE = LRUCache(8)


@dataclass
class SweepConfig:
    t_values: tuple[int, ...] = tuple(range(0, 1001, 100))  # start steps to reconstruct from
    per_class: int = 20  # real training images per class
    seed: int = 0  # image choice and the shared noise draw
    k: int = 5  # nearest neighbours of the PRDC radii
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(n_steps=25))
    train_accuracy: bool = False  # also train a classifier on each reconstructed set
    classifier: FeatureConfig = field(default_factory=lambda: FeatureConfig(width=16, feature_dim=64, epochs=15))
    embedding: str = "classifier"  # classifier | ssl | random: the feature space of every metric
    reference: str = "same"  # same | disjoint: the real set the PRDC / Fréchet metrics compare against
    source: str = "train"  # train | test: the split of the originals and the disjoint reference (test: images the
    # generator never saw)


@dataclass
class SweepResult:
    rows: list[dict]  # one dict of metrics per t (the ``genreg sweep --json`` contract)
    indices: np.ndarray  # (N,) dataset indices of the originals
    originals: torch.Tensor  # (N, C, H, W)
    labels: np.ndarray  # (N,)
    reconstructions: torch.Tensor  # (len(t), N, C, H, W)
    original_features: np.ndarray  # (N, d) in config.embedding
    features: np.ndarray  # (len(t), N, d)
    reference_indices: np.ndarray | None = None  # (N_ref,) dataset indices of the real reference set
    # (len(t), N_ref) bool: reference image outside every reconstruction's k-NN ball (a coverage hole) at each t
    uncovered: np.ndarray | None = None

    @property
    def t_values(self) -> list[int]:
        return [row["t"] for row in self.rows]


def class_centroids(lab: Lab, embedding: str = "classifier") -> np.ndarray:
    """(K, d) mean feature of each class over the real training split, in ``embedding``."""
    feats = train_embedding(lab, embedding)
    labels = lab.dataset.labels[lab.split.train].numpy()
    return np.stack([feats[labels == c].mean(0) for c in range(lab.n_classes)])


def _train_accuracy(lab: Lab, images: torch.Tensor, labels: np.ndarray, config: SweepConfig) -> float:
    """Accuracy of a classifier trained on ``images``: on the test split, or on the val split when the originals
    are test images (never score a classifier on the images its training set reconstructs)."""
    model = train_feature_extractor(images, torch.from_numpy(labels), lab.n_classes, config.classifier, lab.device)
    held_out = lab.split.val if config.source == "test" else lab.split.test
    return accuracy(model, lab.dataset.images[held_out], lab.dataset.labels[held_out])


def _row(lab: Lab, t: int, x0: torch.Tensor, rec: torch.Tensor, f0: np.ndarray, f: np.ndarray, f_ref: np.ndarray,
         labels: np.ndarray, centroids: np.ndarray, config: SweepConfig, ref_labels: np.ndarray,
         holes_out: list) -> dict:
    metrics = distribution_metrics(f_ref, f, config.k)
    holes_out.append(~metrics.prdc.real_recalled)
    overall = metrics.overall
    holes = uncovered_by_class(metrics.prdc.real_recalled, ref_labels)
    row = {
        "t": int(t),
        "mse": float((rec - x0).pow(2).mean()),
        "feature_distance": float(np.linalg.norm(f - f0, axis=1).mean()),
        **{key: overall[key] for key in ("precision", "recall", "density", "coverage", "frechet_distance")},
        "centroid_distance": float(np.linalg.norm(f - centroids[labels], axis=1).mean()),
        "label_agreement": float((predict_labels(lab.extractor, rec) == labels).mean()),
        # coverage holes: real reference images outside every reconstruction's k-NN ball, per class (index = class)
        "n_uncovered": int(sum(h["uncovered"] for h in holes)),
        "uncovered": [int(h["uncovered"]) for h in holes],
        "uncovered_share": [float(h["share"]) for h in holes],
    }
    if config.train_accuracy:
        row["train_accuracy_on_reconstructions"] = _train_accuracy(lab, rec, labels, config)
    return {**row, "embedding": config.embedding, "reference": config.reference, "source": config.source,
            "seed": config.seed}


def run_sweep(lab: Lab, config: SweepConfig, on_progress: SweepProgress | None = None) -> SweepResult:
    """Reconstruct the same images from every t in ``config.t_values`` and measure each against the originals.

    Results are cached in-process by (lab, config), so asking again costs nothing.
    """
    T = lab.generator.num_train_timesteps
    if not config.t_values:
        raise ValueError("t_values is empty")
    bad = [t for t in config.t_values if not 0 <= t <= T]
    if bad:
        raise ValueError(f"t values {bad} lie outside [0, {T}]")
    if config.embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {config.embedding!r} (known: {', '.join(EMBEDDINGS)})")
    if config.reference not in REFERENCES:
        raise ValueError(f"unknown reference {config.reference!r} (known: {', '.join(REFERENCES)})")
    if config.source not in SOURCES:
        raise ValueError(f"unknown image source {config.source!r} (known: {', '.join(SOURCES)})")
    key = json.dumps([lab.key(), asdict(config)], default=str)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    indices = real_subset(lab, config.per_class, config.seed, source=config.source)
    x0, y = lab.dataset.images[indices], lab.dataset.labels[indices]
    labels = y.numpy()
    n_t = len(config.t_values)

    def reconstructing(done: int, total: int) -> None:
        if on_progress is not None and done < total:
            on_progress(done, 2 * n_t, f"reconstructing from t = {config.t_values[done]}")

    reconstructing(0, n_t)
    recs = reconstruct_many(lab.generator, x0, y.to(lab.device), list(config.t_values), config.sampler, config.seed,
                            reconstructing)
    f0 = embed(lab, x0, config.embedding)
    reference = reference_subset(lab, indices, config.per_class, config.seed, config.reference, config.source)
    f_ref = f0 if config.reference == "same" else embed(lab, lab.dataset.images[reference], config.embedding)
    ref_labels = labels if config.reference == "same" else lab.dataset.labels[reference].numpy()
    centroids = class_centroids(lab, config.embedding)
    rows, feats, holes = [], [], []
    for i, (t, rec) in enumerate(zip(config.t_values, recs)):
        if on_progress is not None:
            on_progress(n_t + i, 2 * n_t, f"measuring t = {t}")
        feats.append(embed(lab, rec, config.embedding))
        rows.append(_row(lab, t, x0, rec, f0, feats[-1], f_ref, labels, centroids, config, ref_labels, holes))
    if on_progress is not None:
        on_progress(2 * n_t, 2 * n_t, "done")
    result = SweepResult(rows, indices, x0, labels, recs, f0, np.stack(feats), reference, np.stack(holes))
    _CACHE.put(key, result)
    return result


def drift_projection(result: SweepResult, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on the originals' features; returns (originals (N, 2), reconstructions (len(t), N, 2))."""
    projector = Projector("pca", 2, random_state).fit(result.original_features)
    return projector.transform(result.original_features), np.stack([projector.transform(f) for f in result.features])

"""Real vs synthetic in feature space: build both sets, embed them, compare their distributions.

A synthetic source is generation from noise, reconstruction from start step t, an image folder the
user supplies, or any precomputed images (e.g. samples from meta-selected latents). The embedding is the
feature classifier, the self-supervised backbone or a fixed random network (``genreg_core.analysis.embedding``);
the real reference set is the images reconstructed from ("same") or other training images ("disjoint").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from genreg_core.analysis.embedding import EMBEDDINGS, EmbeddingName, embed, train_embedding
from genreg_core.config import SamplerConfig
from genreg_core.data.datasets import load_image_folder
from genreg_core.diffusion.sampling import reconstruct
from genreg_core.evaluation.metrics import DistributionMetrics, distribution_metrics
from genreg_core.lab import REFERENCES, Lab, real_subset, reference_subset

SourceName = Literal["generate", "reconstruct", "folder", "mgr"]
SOURCES: tuple[str, ...] = ("generate", "reconstruct", "folder", "mgr")
ReferenceName = Literal["same", "disjoint"]


@dataclass
class FeatureSpaceConfig:
    source: SourceName = "generate"  # where the synthetic images come from
    per_class: int = 100  # real (training split) and synthetic images per class
    t: int = 500  # start step, for source "reconstruct"
    folder: str | None = None  # image folder, for source "folder"
    run_id: str | None = None  # an MGR run of the run store, for source "mgr"
    k: int = 5  # nearest neighbours of the PRDC radii
    seed: int = 0  # real subset, noise
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(n_steps=25))
    embedding: EmbeddingName = "classifier"  # classifier | ssl | random (genreg_core.analysis.embedding)
    # real reference set: "same" = the training images the synthetic set starts from (source reconstruct),
    # "disjoint" = as many other training images per class (every other source draws one subset either way)
    reference: ReferenceName = "same"


@dataclass
class FeatureSpaceResult:
    real_ids: np.ndarray  # (N,) dataset indices of the real images
    real_images: torch.Tensor  # (N, C, H, W)
    real_labels: np.ndarray  # (N,)
    synthetic_images: torch.Tensor  # (M, C, H, W)
    synthetic_labels: np.ndarray  # (M,)
    real_features: np.ndarray  # (N, d)
    synthetic_features: np.ndarray  # (M, d)
    metrics: DistributionMetrics
    embedding: str = "classifier"  # the embedding of real_features and synthetic_features


def folder_images(lab: Lab, folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of a user folder whose class folders are named like the lab's classes."""
    ds = load_image_folder(folder, lab.dataset.image_size, lab.dataset.channels)
    unknown = [name for name in ds.class_names if name not in lab.dataset.class_names]
    if unknown:
        raise ValueError(f"class folders {unknown} are not classes of the dataset ({lab.dataset.class_names})")
    mapping = torch.tensor([lab.dataset.class_names.index(name) for name in ds.class_names])
    return ds.images, mapping[ds.labels]


def meta_selected_images(snapshots: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples of MGR's meta-selected latents recorded in a run's per-epoch snapshots."""
    chosen = [snap for snap in snapshots if "sample_images" in snap]
    if not chosen:
        raise ValueError("these snapshots hold no MGR samples (pick a finished MGR run)")
    images = torch.cat([snap["sample_images"] for snap in chosen])
    labels = torch.cat([snap["sample_classes"] for snap in chosen]).long()
    if (labels < 0).any():
        raise ValueError("the run's generator was unconditional: its MGR samples carry no class")
    return images, labels


def synthetic_images(lab: Lab, config: FeatureSpaceConfig, real_ids: np.ndarray,
                     on_progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic set for ``config.source``."""
    if config.source == "generate":
        return lab.sample(config.per_class, config.sampler, config.seed, on_progress)
    if config.source == "reconstruct":
        x0, y = lab.dataset.images[real_ids], lab.dataset.labels[real_ids]
        images = reconstruct(lab.generator, x0, y.to(lab.device), config.t, config.sampler, config.seed,
                             on_progress=on_progress)
        return images.cpu(), y
    if config.source == "folder":
        if not config.folder:
            raise ValueError("source 'folder' needs a folder")
        return folder_images(lab, config.folder)
    if config.source == "mgr":
        from genreg_core.runs.store import RunStore

        if not config.run_id:
            raise ValueError("source 'mgr' needs the id of an MGR run")
        return meta_selected_images(RunStore().load_snapshots(config.run_id))
    raise ValueError(f"unknown source {config.source!r} (known: {', '.join(SOURCES)})")


def compare_sets(lab: Lab, real_ids: np.ndarray, images: torch.Tensor, labels: torch.Tensor | np.ndarray,
                 k: int = 5, embedding: str = "classifier") -> FeatureSpaceResult:
    """Embed real images ``real_ids`` and synthetic ``images`` with ``embedding`` and compute the metrics."""
    if embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {embedding!r} (known: {', '.join(EMBEDDINGS)})")
    real_images = lab.dataset.images[real_ids]
    real_labels = lab.dataset.labels[real_ids].numpy()
    synth_labels = np.asarray(labels, dtype=np.int64)
    real_f = embed(lab, real_images, embedding)
    synth_f = embed(lab, images, embedding)
    metrics = distribution_metrics(real_f, synth_f, k, real_labels, synth_labels)
    return FeatureSpaceResult(real_ids, real_images, real_labels, images, synth_labels, real_f, synth_f, metrics,
                              embedding)


def compute_feature_space(lab: Lab, config: FeatureSpaceConfig,
                          on_progress: Callable[[int, int], None] | None = None) -> FeatureSpaceResult:
    """Real training images vs the configured synthetic source, embedded and measured."""
    if config.per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {config.per_class}")
    real_ids = real_subset(lab, config.per_class, config.seed)
    if config.reference not in REFERENCES:  # checked before any generation
        raise ValueError(f"unknown reference {config.reference!r} (known: {', '.join(REFERENCES)})")
    if config.embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {config.embedding!r} (known: {', '.join(EMBEDDINGS)})")
    images, labels = synthetic_images(lab, config, real_ids, on_progress)
    if config.source == "reconstruct":
        real_ids = reference_subset(lab, real_ids, config.per_class, config.seed, config.reference)
    return compare_sets(lab, real_ids, images, labels, config.k, config.embedding)


def embedding_rows(result: FeatureSpaceResult, real_xy: np.ndarray, synth_xy: np.ndarray,
                   class_names: list[str]) -> list[dict]:
    """One record per point (id, source, class, coordinates, manifold flags), for CSV export."""
    prdc = result.metrics.prdc
    axes = ("x", "y", "z")[: real_xy.shape[1]]
    rows = []
    n = len(real_xy)
    for i, xy in enumerate(real_xy):
        rows.append({"id": i, "source": "real", "dataset_index": int(result.real_ids[i]),
                     "class": class_names[result.real_labels[i]], **dict(zip(axes, map(float, xy))),
                     "covered": bool(prdc.real_covered[i]), "in_real_manifold": None})
    for j, xy in enumerate(synth_xy):
        rows.append({"id": n + j, "source": "synthetic", "dataset_index": None,
                     "class": class_names[result.synthetic_labels[j]], **dict(zip(axes, map(float, xy))),
                     "covered": None, "in_real_manifold": bool(prdc.synthetic_in_manifold[j])})
    return rows


def nearest_training_images(lab: Lab, features: np.ndarray, n: int = 5,
                            embedding: str = "classifier") -> tuple[np.ndarray, np.ndarray]:
    """For each feature row (in ``embedding``), the ``n`` nearest real training images: (dataset indices,
    distances), (Q, n) each."""
    from genreg_core.evaluation.metrics import nearest_neighbours

    idx, dist = nearest_neighbours(features, train_embedding(lab, embedding), n)
    return lab.split.train[idx], dist

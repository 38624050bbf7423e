"""Curate synthetic samples: measure a selected region, filter the samples, export them as an image folder.

A region is any subset of the real and synthetic points of a feature-space result (a lasso on the map); its
metrics are the PRDC numbers and the Fréchet distance of the selected synthetic points against the selected
real ones (Naeem et al. 2020, ``genreg_core.evaluation.metrics``). Filters combine the per-sample manifold
flag, the class, an MGR run's per-sample influence on the validation loss, the distance to the nearest real
training image (the copy check) and a selection. An export is ``ROOT/<class>/*.png`` plus ``manifest.json``,
which records how the samples were chosen; it loads back through the image-folder path.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from genreg_core.analysis.feature_space import (
    FeatureSpaceConfig,
    FeatureSpaceResult,
    compute_feature_space,
    nearest_training_images,
)
from genreg_core.config import SamplerConfig
from genreg_core.diffusion.model import Generator
from genreg_core.evaluation.metrics import compute_prdc, frechet_distance
from genreg_core.imaging import png_bytes, to_uint8
from genreg_core.lab import Lab

KeepName = Literal["inside", "outside", "all"]
KEEPS: tuple[str, ...] = ("inside", "outside", "all")
CurateSource = Literal["generate", "reconstruct"]
CURATE_SOURCES: tuple[str, ...] = ("generate", "reconstruct")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "genreg-curated/1"


@dataclass
class RegionMetrics:
    """The metrics of a selected region, or why there are none."""

    n_real: int  # selected real points
    n_synthetic: int  # selected synthetic points
    k: int  # the k asked for
    metrics: dict | None  # precision, recall, density, coverage, frechet_distance; None when a side is too small
    notice: str | None  # why ``metrics`` is None
    class_mix: list[dict]  # {"class": c, "real": n, "synthetic": n} for each class present in the selection


def class_mix(real_labels: np.ndarray, synthetic_labels: np.ndarray, n_classes: int) -> list[dict]:
    """How many selected real and synthetic points each class has (classes with none on both sides left out)."""
    real = np.bincount(np.asarray(real_labels, dtype=np.int64), minlength=n_classes)
    synth = np.bincount(np.asarray(synthetic_labels, dtype=np.int64), minlength=n_classes)
    return [{"class": c, "real": int(real[c]), "synthetic": int(synth[c])} for c in range(n_classes)
            if real[c] or synth[c]]


def region_metrics(result: FeatureSpaceResult, real_ids: list[int] | np.ndarray,
                   synthetic_ids: list[int] | np.ndarray, k: int, n_classes: int) -> RegionMetrics:
    """PRDC and Fréchet distance of the selected synthetic points against the selected real ones.

    ``real_ids`` index ``result.real_features``, ``synthetic_ids`` ``result.synthetic_features``. PRDC needs
    more than ``k`` points on each side, the Fréchet distance at least 2; below that ``metrics`` is None and
    ``notice`` says which side is short.
    """
    real_ids = np.asarray(real_ids, dtype=np.int64)
    synthetic_ids = np.asarray(synthetic_ids, dtype=np.int64)
    mix = class_mix(result.real_labels[real_ids], result.synthetic_labels[synthetic_ids], n_classes)
    short = [f"{n} {side} point{'s' if n != 1 else ''}" for side, n in
             (("real", len(real_ids)), ("synthetic", len(synthetic_ids))) if n <= k]
    if short:
        notice = (f"Too few points for k = {k}: the selection has {' and '.join(short)}; PRDC needs more than k "
                  "on each side. Select a larger region or lower k.")
        return RegionMetrics(len(real_ids), len(synthetic_ids), k, None, notice, mix)
    x, y = result.real_features[real_ids], result.synthetic_features[synthetic_ids]
    prdc = compute_prdc(x, y, k)
    metrics = {"precision": prdc.precision, "recall": prdc.recall, "density": prdc.density,
               "coverage": prdc.coverage, "frechet_distance": frechet_distance(x, y)}
    return RegionMetrics(len(real_ids), len(synthetic_ids), k, metrics, None, mix)


@dataclass
class CurationFilter:
    """Which synthetic samples to keep; every criterion set must hold (they combine with AND)."""

    keep: KeepName = "all"  # inside / outside the real manifold (some real k-NN ball holds the sample), or all
    classes: tuple[int, ...] | None = None  # class indices to keep; None = every class
    min_nn_distance: float | None = None  # drop near-copies: nearest real training image closer than this
    max_nn_distance: float | None = None  # drop outliers: nearest real training image farther than this
    max_influence: float | None = None  # MGR runs: keep influence ≤ this (negative lowers the validation loss)
    selection: tuple[int, ...] | None = None  # synthetic indices picked on the map; None = no selection filter

    def check(self) -> None:
        """``ValueError`` naming the bad criterion."""
        if self.keep not in KEEPS:
            raise ValueError(f"unknown keep {self.keep!r} (known: {', '.join(KEEPS)})")
        for name in ("min_nn_distance", "max_nn_distance", "max_influence"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.min_nn_distance is not None and self.min_nn_distance < 0:
            raise ValueError(f"min_nn_distance must be non-negative, got {self.min_nn_distance}")
        if self.max_nn_distance is not None and self.max_nn_distance < 0:
            raise ValueError(f"max_nn_distance must be non-negative, got {self.max_nn_distance}")


def curation_mask(in_manifold: np.ndarray, labels: np.ndarray, nn_distance: np.ndarray, rules: CurationFilter,
                  influence: np.ndarray | None = None) -> np.ndarray:
    """(M,) bool: the synthetic samples every criterion of ``rules`` keeps."""
    rules.check()
    in_manifold = np.asarray(in_manifold, dtype=bool)
    m = in_manifold.shape[0]
    labels, nn_distance = np.asarray(labels), np.asarray(nn_distance, dtype=np.float64)
    if labels.shape != (m,) or nn_distance.shape != (m,):
        raise ValueError(f"flags, labels and distances must all have shape ({m},), got {labels.shape} and "
                         f"{nn_distance.shape}")
    keep = np.ones(m, dtype=bool)
    if rules.keep == "inside":
        keep &= in_manifold
    elif rules.keep == "outside":
        keep &= ~in_manifold
    if rules.classes is not None:
        keep &= np.isin(labels, np.asarray(rules.classes, dtype=np.int64))
    if rules.min_nn_distance is not None:
        keep &= nn_distance >= rules.min_nn_distance
    if rules.max_nn_distance is not None:
        keep &= nn_distance <= rules.max_nn_distance
    if rules.max_influence is not None:
        if influence is None:
            raise ValueError("an influence filter needs per-sample influence (only an MGR run's samples have it)")
        influence = np.asarray(influence, dtype=np.float64)
        if influence.shape != (m,):
            raise ValueError(f"influence must have shape ({m},), got {influence.shape}")
        keep &= influence <= rules.max_influence
    if rules.selection is not None:
        chosen = np.asarray(rules.selection, dtype=np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= m):
            raise ValueError(f"selection indices must lie in [0, {m - 1}]")
        picked = np.zeros(m, dtype=bool)
        picked[chosen] = True
        keep &= picked
    return keep


def generator_hash(generator: Generator) -> str:
    """SHA-256 of the UNet's weights (names, shapes, dtypes and bytes, in name order): which generator it was."""
    digest = hashlib.sha256()
    for name, tensor in sorted(generator.unet.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class CurateConfig:
    """``genreg curate``: make candidates, measure them against real images, keep the ones ``rules`` accepts."""

    source: CurateSource = "generate"  # generation from noise, or reconstruction of real images from step t
    per_class: int = 20  # candidates per class (and real reference images per class)
    seed: int = 0  # real subset and noise
    t: int = 500  # start step, for source "reconstruct"
    k: int = 5  # nearest neighbours of the manifold flags
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(n_steps=25))
    embedding: str = "classifier"  # feature space of the flags and the nearest-real distances
    rules: CurationFilter = field(default_factory=CurationFilter)


@dataclass
class Candidates:
    """Synthetic samples with what the filters look at."""

    images: torch.Tensor  # (M, C, H, W) in [-1, 1]
    labels: np.ndarray  # (M,) class indices
    in_manifold: np.ndarray  # (M,) bool, inside the real manifold
    nn_distance: np.ndarray  # (M,) feature distance to the nearest real training image
    nn_index: np.ndarray  # (M,) dataset index of that image
    influence: np.ndarray | None = None  # (M,) MGR's per-sample influence, when known


def candidates_of(lab: Lab, result: FeatureSpaceResult, influence: np.ndarray | None = None) -> Candidates:
    """The synthetic samples of a feature-space result with their flags and nearest real training image."""
    nn_idx, nn_dist = nearest_training_images(lab, result.synthetic_features, n=1, embedding=result.embedding)
    return Candidates(result.synthetic_images, result.synthetic_labels, result.metrics.prdc.synthetic_in_manifold,
                      nn_dist[:, 0], nn_idx[:, 0], influence)


def describe(lab: Lab, config: FeatureSpaceConfig | CurateConfig, rules: CurationFilter) -> dict:
    """The manifest's record of how the samples were made and chosen (no per-image entries)."""
    record = {"format": MANIFEST_FORMAT, "source": config.source, "per_class": config.per_class,
              "seed": config.seed, "k": config.k, "embedding": config.embedding,
              "sampler": asdict(config.sampler), "filters": asdict(rules),
              "generator": {"source": lab.generator.source, "sha256": generator_hash(lab.generator)},
              "dataset": {"name": lab.data_config.name, "root": lab.data_config.root,
                          "image_size": lab.dataset.image_size, "class_names": list(lab.dataset.class_names)}}
    if config.source == "reconstruct":
        record["t"] = config.t
    if getattr(config, "run_id", None):
        record["run_id"] = config.run_id
    return record


def _file_entries(candidates: Candidates, keep: np.ndarray, class_names: list[str]) -> list[dict]:
    entries = []
    for i in np.flatnonzero(keep):
        entry = {"file": f"{class_names[candidates.labels[i]]}/{i:05d}.png", "index": int(i),
                 "class": class_names[candidates.labels[i]], "in_real_manifold": bool(candidates.in_manifold[i]),
                 "nn_distance": float(candidates.nn_distance[i]), "nn_dataset_index": int(candidates.nn_index[i])}
        if candidates.influence is not None:
            entry["influence"] = float(candidates.influence[i])
        entries.append(entry)
    return entries


def manifest_of(record: dict, candidates: Candidates, keep: np.ndarray, class_names: list[str]) -> dict:
    """``record`` with the counts and one entry per kept image (its file, flags and nearest-real distance)."""
    images = _file_entries(candidates, keep, class_names)
    counts: dict[str, int] = {}
    for entry in images:
        counts[entry["class"]] = counts.get(entry["class"], 0) + 1
    manifest = {**record, "n_candidates": int(len(keep)), "n_kept": len(images), "counts": counts, "images": images}
    return json.loads(json.dumps(manifest))  # plain JSON types (tuples as lists), as it reads back


def _pngs(candidates: Candidates, manifest: dict) -> dict[str, bytes]:
    pixels = to_uint8(candidates.images[[e["index"] for e in manifest["images"]]])  # (K, H, W, C)
    return {e["file"]: png_bytes(p[..., 0] if p.shape[-1] == 1 else p) for e, p in zip(manifest["images"], pixels)}


def _check_nonempty(manifest: dict) -> None:
    if manifest["n_kept"] == 0:
        raise ValueError(f"the filters keep none of the {manifest['n_candidates']} samples; loosen them")


def export_folder(out: str | Path, candidates: Candidates, keep: np.ndarray, record: dict,
                  class_names: list[str]) -> dict:
    """Write the kept samples as ``OUT/<class>/*.png`` and ``OUT/manifest.json``; returns the manifest.

    ``OUT`` may exist but must not already hold images or a manifest (nothing is overwritten).
    """
    manifest = manifest_of(record, candidates, keep, class_names)
    _check_nonempty(manifest)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; give a new folder")
    try:
        for name, data in _pngs(candidates, manifest).items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    except OSError as exc:
        raise ValueError(f"cannot write the export to {out}: {exc.strerror or exc}") from exc
    return manifest


def export_zip(candidates: Candidates, keep: np.ndarray, record: dict, class_names: list[str],
               root: str = "curated") -> bytes:
    """The same export as :func:`export_folder`, as the bytes of a zip whose files lie under ``root/``."""
    manifest = manifest_of(record, candidates, keep, class_names)
    _check_nonempty(manifest)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _pngs(candidates, manifest).items():
            archive.writestr(f"{root}/{name}", data)
        archive.writestr(f"{root}/{MANIFEST}", json.dumps(manifest, indent=2))
    return buffer.getvalue()


def uncurated_mask(keep: np.ndarray, seed: int) -> np.ndarray:
    """As many samples as ``keep`` holds, drawn uniformly from all candidates (the train-on-curated control)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(keep), dtype=bool)
    mask[rng.choice(len(keep), size=int(keep.sum()), replace=False)] = True
    return mask


def curate(lab: Lab, config: CurateConfig,
           on_progress: Callable[[int, int], None] | None = None) -> tuple[Candidates, np.ndarray, dict]:
    """Make the candidates of ``config``, flag them and apply its filters: (candidates, keep mask, record)."""
    if config.source not in CURATE_SOURCES:
        raise ValueError(f"unknown source {config.source!r} (known: {', '.join(CURATE_SOURCES)})")
    config.rules.check()
    fs_config = FeatureSpaceConfig(source=config.source, per_class=config.per_class, t=config.t, k=config.k,
                                   seed=config.seed, sampler=config.sampler, embedding=config.embedding)
    result = compute_feature_space(lab, fs_config, on_progress)
    candidates = candidates_of(lab, result)
    keep = curation_mask(candidates.in_manifold, candidates.labels, candidates.nn_distance, config.rules)
    return candidates, keep, describe(lab, config, config.rules)


def meta_selected_influence(snapshots: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """(M,) the recorded influence of an MGR run's samples, in the order of ``meta_selected_images``."""
    chosen = [snap for snap in snapshots if "sample_images" in snap]
    if not chosen or any("influence" not in snap for snap in chosen):
        raise ValueError("these snapshots hold no per-sample influence (pick a finished MGR run)")
    return torch.cat([snap["influence"].float().reshape(-1) for snap in chosen]).numpy()


def export_pair(root: str | Path, candidates: Candidates, keep: np.ndarray, record: dict, class_names: list[str],
                seed: int = 0) -> tuple[Path, Path]:
    """The train-on-curated check's two pools: ``ROOT/curated`` (the kept samples) and ``ROOT/uncurated`` (as many
    drawn uniformly from all candidates), each a full export; an existing pair is reused."""
    root = Path(root)
    curated, uncurated = root / "curated", root / "uncurated"
    if not (curated / MANIFEST).exists():
        export_folder(curated, candidates, keep, {**record, "role": "curated"}, class_names)
    if not (uncurated / MANIFEST).exists():
        control = uncurated_mask(keep, seed)
        export_folder(uncurated, candidates, control, {**record, "role": "uncurated control", "filters": None,
                                                       "control_seed": seed}, class_names)
    return curated, uncurated

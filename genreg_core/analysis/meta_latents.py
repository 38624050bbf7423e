"""Replay of MGR's meta pseudo sampling: meta-selected latents F_ω(u) against the random latents u they came from.

For every epoch's snapshot of an MGR run, the random latents ``u`` are decoded by the same deterministic
DDIM chain as the selected ones (``G(u, c)`` vs ``G(F_ω(u), c)``), so the two sets differ only by the finder.
Both are embedded next to real training features and measured against them. GSSL runs record the same
snapshot with ``u`` the initial latents of its bank and ``F_ω(u)`` their meta-optimized values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genreg_core.config import SamplerConfig, TrainConfig
from genreg_core.diffusion.model import Generator
from genreg_core.diffusion.sampling import reconstruct
from genreg_core.evaluation.metrics import distribution_metrics
from genreg_core.evaluation.projection import Projector
from genreg_core.features.extractor import extract_features
from genreg_core.lab import Lab, real_subset
from genreg_core.training.methods import METHODS

REQUIRED = ("latents", "sample_images", "sample_classes", "influence")
META_METHODS = tuple(name for name, cls in METHODS.items() if cls.records_latents)  # runs with these snapshots


def snapshot_sampler_steps(train: TrainConfig) -> int:
    """The DDIM steps of the chain a run decoded its latents with (MGR's or GSSL's)."""
    return train.gssl.sampler_steps if train.method == "gssl" else train.mgr.sampler_steps
STATIC_SHIFT = 0.05  # an RMS latent shift below this (u has unit variance) means the finder has barely moved


@dataclass
class MetaLatentReplay:
    epochs: list[int]  # 1-based epoch of each snapshot
    selected: torch.Tensor  # (E, S, C, H, W) G(F_ω(u), c), as recorded in training
    random: torch.Tensor  # (E, S, C, H, W) G(u, c), decoded here with the same chain
    classes: np.ndarray  # (E, S)
    influence: np.ndarray  # (E, S) −λ ∇CE_val·∇ℓ_PCR per sample (negative: lowers the validation loss)
    latent_shift: np.ndarray  # (E,) RMS of F_ω(u) − u, mean over the epoch's meta steps
    beats_random: np.ndarray  # (E,) share of the epoch's meta steps whose selected samples left a lower validation
    # loss after the lookahead than the random ones did (NaN when the run did not compare)
    val_loss_before: list[np.ndarray]  # per epoch, one value per meta step
    val_loss_after: list[np.ndarray]
    real_xy: np.ndarray  # (N, 2) real training features
    real_labels: np.ndarray  # (N,)
    selected_xy: np.ndarray  # (E, S, 2)
    random_xy: np.ndarray  # (E, S, 2)
    metrics: dict[str, dict]  # "selected" / "random" -> distribution metrics vs the real features (all epochs)


def epoch_shift(snapshot: dict[str, torch.Tensor]) -> float:
    """Mean RMS latent shift of the epoch's meta steps (older runs: of its last meta step)."""
    if snapshot.get("finder_shift") is not None and snapshot["finder_shift"].numel():
        return float(snapshot["finder_shift"].float().mean())
    return float((snapshot["latents"][1] - snapshot["latents"][0]).pow(2).mean().sqrt())


def beats_random_share(snapshot: dict[str, torch.Tensor]) -> float:
    """Share of meta steps with CE(B_val; θ'_selected) < CE(B_val; θ'_random); NaN when not recorded."""
    after, random = snapshot.get("val_loss_after"), snapshot.get("val_loss_after_random")
    if after is None or random is None or random.numel() == 0 or random.numel() != after.numel():
        return float("nan")
    return float((after < random).float().mean())


def finder_is_static(replay: MetaLatentReplay) -> bool:
    """True when the finder never moved the latents by more than ``STATIC_SHIFT`` (RMS) in any epoch."""
    return bool(np.nanmax(replay.latent_shift) < STATIC_SHIFT)


def replay_meta_latents(lab: Lab, snapshots: list[dict[str, torch.Tensor]], sampler_steps: int,
                        k: int = 5, random_state: int = 0, generator: Generator | None = None) -> MetaLatentReplay:
    """Decode the random latents of every MGR snapshot, embed both sets and measure them against real data.

    ``generator`` is the one the run used (its regime's; default the lab's)."""
    generator = generator or lab.generator
    snaps = [s for s in snapshots if all(key in s for key in REQUIRED)]
    if not snaps:
        raise ValueError("these snapshots hold no MGR latents (pick an MGR run with an epoch done)")
    if (snaps[0]["sample_classes"] < 0).any():
        raise ValueError("the run's generator was unconditional: its samples carry no class to compare")
    selected = torch.stack([s["sample_images"].float() for s in snaps])  # (E, S, C, H, W)
    classes = torch.stack([s["sample_classes"].long() for s in snaps])  # (E, S)
    u = torch.stack([s["latents"][0].float() for s in snaps])  # (E, S, C, H, W)
    e, n = classes.shape
    flat_u, flat_c = u.reshape(e * n, *u.shape[2:]), classes.reshape(-1)
    random = reconstruct(generator, torch.zeros_like(flat_u), flat_c.to(lab.device), generator.num_train_timesteps,
                         SamplerConfig(n_steps=sampler_steps), noise=flat_u)
    random = random.cpu().reshape(selected.shape)
    real_ids = real_subset(lab, 50, random_state)
    real_f = extract_features(lab.extractor, lab.dataset.images[real_ids])
    sel_f = extract_features(lab.extractor, selected.reshape(e * n, *selected.shape[2:]))
    rand_f = extract_features(lab.extractor, random.reshape(e * n, *random.shape[2:]))
    projector = Projector("pca", 2, random_state).fit(real_f)
    k = min(k, e * n - 1)
    labels = flat_c.numpy()
    real_labels = lab.dataset.labels[real_ids].numpy()
    return MetaLatentReplay(
        epochs=list(range(1, e + 1)), selected=selected, random=random, classes=classes.numpy(),
        influence=torch.stack([s["influence"].float() for s in snaps]).numpy(),
        latent_shift=np.array([epoch_shift(s) for s in snaps]),
        beats_random=np.array([beats_random_share(s) for s in snaps]),
        val_loss_before=[s.get("val_loss_before", torch.zeros(0)).numpy() for s in snaps],
        val_loss_after=[s.get("val_loss_after", torch.zeros(0)).numpy() for s in snaps],
        real_xy=projector.transform(real_f), real_labels=real_labels,
        selected_xy=projector.transform(sel_f).reshape(e, n, 2), random_xy=projector.transform(rand_f).reshape(e, n, 2),
        metrics={name: distribution_metrics(real_f, f, k, real_labels, labels).overall
                 for name, f in (("selected", sel_f), ("random", rand_f))})

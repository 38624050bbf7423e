"""Generator regimes: which diffusion model a classifier run may draw synthetic images from.

- ``pool``: the lab's generator. The shipped digits model was trained on the **whole labelled training
  split**, so it knows more labels than an N-per-class classifier — like a generator pretrained on a large
  labelled source in the papers, but it hands GDA information the baselines do not have.
- ``own``: a class-conditional generator trained **only on the run's own N-per-class images** (the rows
  ``per_class_subset`` picks for the run; for MGR that includes its held-out B_val, which is part of the
  classifier's labelled set). Never the validation or test split, nor any other training image. It is
  trained on demand with the existing loop (``generator_training.train_generator``) and cached under
  ``$GENREG_HOME/cache/own-generators/<key>``, the key hashing the data config, the subset's rows, N, the seed
  and both configs; a file lock lets concurrent runs of the same key train it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from genreg_core.config import GENERATOR_REGIMES, DataConfig, GeneratorTrainConfig, TrainConfig, UNetConfig, get_preset
from genreg_core.data.datasets import ImageDataset, Split, per_class_subset
from genreg_core.diffusion.model import METADATA_FILE, Generator, load_generator
from genreg_core.diffusion.training import train_generator
from genreg_core.lab import Lab
from genreg_core.paths import genreg_home

StepCallback = Callable[[int, int, dict[str, float]], None]  # (step, total steps, {"loss", "lr"})


def check_regime(regime: str) -> None:
    if regime not in GENERATOR_REGIMES:
        raise ValueError(f"unknown generator regime {regime!r} (known: {', '.join(GENERATOR_REGIMES)})")


def own_generator_configs(dataset: ImageDataset, config: TrainConfig) -> tuple[UNetConfig, GeneratorTrainConfig]:
    """The UNet and training configs of the run's own generator (from ``config.own_generator_preset``)."""
    preset = get_preset(config.own_generator_preset)
    unet = replace(preset.unet, sample_size=dataset.image_size, channels=dataset.channels,
                   num_classes=dataset.n_classes)
    return unet, replace(preset.own_generator, seed=config.seed)


def own_generator_key(data_config: DataConfig, subset: np.ndarray, per_class: int | None, seed: int,
                      unet: UNetConfig, train: GeneratorTrainConfig) -> str:
    """A content key of an own generator: data, the subset's rows, N, seed and configs (16 hex digits)."""
    payload = json.dumps({"data": asdict(data_config), "rows": np.asarray(subset).tolist(), "per_class": per_class,
                          "seed": seed, "unet": asdict(unet), "train": asdict(train)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def own_generator_dir(key: str) -> Path:
    return genreg_home() / "cache" / "own-generators" / key


def get_own_generator(dataset: ImageDataset, split: Split, data_config: DataConfig, config: TrainConfig,
                      device: torch.device | str = "cpu", on_step: StepCallback | None = None) -> Generator:
    """The run's own generator: loaded from the cache, or trained on ``images[subset]`` only and cached.

    ``subset`` is exactly the rows the classifier run draws (``per_class_subset`` of the train split with the
    run's seed); no other row of ``dataset.images`` is read.
    """
    subset = per_class_subset(dataset.labels, split.train, config.per_class, config.seed)
    unet_config, train_config = own_generator_configs(dataset, config)
    key = own_generator_key(data_config, subset, config.per_class, config.seed, unet_config, train_config)
    folder = own_generator_dir(key)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent run of the same key waits, then loads
        if not (folder / METADATA_FILE).exists():
            total = train_config.steps
            train_generator(
                dataset.images[subset], dataset.labels[subset], unet_config, train_config, folder,
                class_names=dataset.class_names, device=device,
                on_step=None if on_step is None else (lambda step, m: on_step(step, total, m)),
                extra_metadata={"regime": "own", "key": key, "per_class": config.per_class, "seed": config.seed,
                                "data_config": asdict(data_config), "train_rows": subset.tolist()})
        return load_generator(folder, device)


def run_generator(lab: Lab, config: TrainConfig, on_step: StepCallback | None = None) -> Generator:
    """The generator a run of ``config`` uses under its regime (``pool``, or a method without synthetic data:
    the lab's generator)."""
    from genreg_core.training.methods import make_method

    check_regime(config.generator_regime)
    if config.generator_regime == "pool" or not make_method(config.method, config).needs_generator:
        return lab.generator
    return get_own_generator(lab.dataset, lab.split, lab.data_config, config, lab.device, on_step)

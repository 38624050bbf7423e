"""A lab bundles what every page and CLI command starts from: data, split, generator, feature extractor."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from genreg_core.config import DataConfig, FeatureConfig, SamplerConfig, default_image_size
from genreg_core.data.datasets import (
    ImageDataset,
    Split,
    dataset_shape,
    load_dataset,
    per_class_subset,
    split_dataset,
)
from genreg_core.device import resolve_device
from genreg_core.diffusion.acceleration import Precision
from genreg_core.diffusion.model import Generator, load_generator, shipped_generator_dir
from genreg_core.diffusion.sampling import class_labels, sample_images
from genreg_core.features.extractor import (
    SHIPPED_FEATURES,
    FeatureExtractor,
    extract_features,
    get_feature_extractor,
    load_feature_extractor,
    predict_labels,
)
from genreg_core.paths import genreg_home


@dataclass
class Lab:
    """The dataset with its split, a frozen generator and a trained feature extractor, on one device."""

    data_config: DataConfig
    dataset: ImageDataset
    split: Split
    generator: Generator
    extractor: FeatureExtractor
    device: torch.device
    generator_source: str | None = None  # what open_lab was given (None: the shipped model)
    _train_features: np.ndarray | None = field(default=None, init=False, repr=False)
    _embedding_cache: dict = field(default_factory=dict, init=False, repr=False)  # genreg_core.analysis.embedding's

    def train_features(self) -> np.ndarray:
        """Features (N_train, d) of the real training split, computed once per lab (the extractor is frozen)."""
        if self._train_features is None:
            self._train_features = extract_features(self.extractor, self.dataset.images[self.split.train])
        return self._train_features

    def key(self) -> str:
        """A stable string naming what a result computed from this lab depends on: the data, the generator, the
        device, and the generator's precision and compilation (a bf16 result is not an fp32 one)."""
        return json.dumps([asdict(self.data_config), self.generator.source, str(self.device), self.generator.precision,
                           self.generator.compile], sort_keys=True)

    @property
    def n_classes(self) -> int:
        return self.dataset.n_classes

    def train_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.images[self.split.train], self.dataset.labels[self.split.train]

    def test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.images[self.split.test], self.dataset.labels[self.split.test]

    def sample(self, per_class: int, sampler: SamplerConfig | None = None, seed: int = 0,
               on_progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` generated images per class and their labels.

        A conditional generator is asked for each class; an unconditional one draws ``per_class × K``
        samples whose labels come from the feature classifier.
        """
        if self.generator.conditional:
            labels = class_labels(self.n_classes, per_class)
            return sample_images(self.generator, labels.to(self.device), sampler=sampler, seed=seed,
                                 on_progress=on_progress).cpu(), labels
        images = sample_images(self.generator, None, n=per_class * self.n_classes, sampler=sampler, seed=seed,
                               on_progress=on_progress).cpu()
        return images, torch.from_numpy(predict_labels(self.extractor, images))


EARLY_GENERATOR = "shipped-early"  # generator source naming the early checkpoint shipped beside the final one


def generator_location(source: str | None, dataset: str) -> str | None:
    """What ``load_generator`` reads for a generator ``source`` of ``dataset``: ``"shipped-early"`` is the early
    checkpoint shipped for the dataset; anything else is passed through (None: the model shipped for it)."""
    return str(shipped_generator_dir(dataset, early=True)) if source == EARLY_GENERATOR else source


def _is_shipped_default(config: DataConfig) -> bool:
    """Whether the shipped feature extractor of ``config.name`` was trained on exactly this data and split."""
    return (config.name in SHIPPED_FEATURES and config.root is None
            and config.image_size == default_image_size(config.name) and config.split_seed == 0
            and config.val_fraction == 0.2 and config.test_fraction == 0.2)


def check_shape(generator: Generator, channels: int, image_size: int) -> None:
    """Raise ``ValueError`` when the generator's images do not have ``channels`` × ``image_size``²."""
    if generator.channels != channels:
        kind = {1: "grayscale", 3: "RGB"}
        raise ValueError(
            f"the generator makes {generator.channels}-channel ({kind.get(generator.channels, '?')}) images but the "
            f"dataset's images have {channels} channel(s) ({kind.get(channels, '?')}); pick a generator trained on "
            f"{channels}-channel images, or data with {generator.channels}-channel images")
    if generator.image_size != image_size:
        raise ValueError(f"the generator makes {generator.image_size}×{generator.image_size} images but the dataset "
                         f"is resized to {image_size}×{image_size}; set the image size to {generator.image_size}")


def check_compatible(generator: Generator, dataset: ImageDataset) -> None:
    """Raise ``ValueError`` when the generator cannot produce images for this dataset."""
    check_shape(generator, dataset.channels, dataset.image_size)
    if generator.conditional and generator.num_classes != dataset.n_classes:
        raise ValueError(f"generator knows {generator.num_classes} classes but the dataset has {dataset.n_classes}")


def open_lab(data_config: DataConfig | None = None, generator_source: str | None = None, device: str = "auto",
             feature_config: FeatureConfig | None = None,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None,
             precision: Precision = "auto", compile: bool | None = None) -> Lab:
    """Load the dataset, split it, load the generator and get the feature extractor (shipped or cached).

    ``generator_source`` None is the model shipped for the dataset; ``"shipped-early"`` its early checkpoint
    (ours: a weaker generator from the same run, the generator-quality dial); else a folder or hub id.

    ``precision`` and ``compile`` say how the generator's UNet runs when sampling (see ``acceleration``).
    """
    data_config = data_config or DataConfig()
    feature_config = feature_config or FeatureConfig()
    dev = resolve_device(device)
    generator = load_generator(generator_location(generator_source, data_config.name), dev, precision, compile,
                               dataset=data_config.name)
    if generator_source == EARLY_GENERATOR:
        generator.source = f"shipped {data_config.name} model, early checkpoint"
    channels, image_size = dataset_shape(data_config)  # headers only: refuse a mismatch before decoding the data
    check_shape(generator, channels, image_size)
    dataset = load_dataset(replace(data_config, channels=channels))
    check_compatible(generator, dataset)
    split = split_dataset(dataset.labels, data_config.split_seed, data_config.val_fraction, data_config.test_fraction)
    shipped_features = SHIPPED_FEATURES.get(data_config.name)
    if _is_shipped_default(data_config) and feature_config == FeatureConfig() and shipped_features.exists():
        extractor = load_feature_extractor(shipped_features, dev)
    else:
        extractor = get_feature_extractor(
            dataset.images[split.train], dataset.labels[split.train], dataset.n_classes, feature_config,
            genreg_home() / "cache" / "features", dev, on_epoch,
            test=(dataset.images[split.test], dataset.labels[split.test]))
    return Lab(data_config, dataset, split, generator, extractor, dev, generator_source)


REFERENCES: tuple[str, ...] = ("same", "disjoint")
SOURCES: tuple[str, ...] = ("train", "test")  # split the real images of an analysis come from


def split_part(lab: Lab, source: str) -> np.ndarray:
    """The lab split's ``train`` or ``test`` indices (test images no shipped model ever saw)."""
    if source not in SOURCES:
        raise ValueError(f"unknown image source {source!r} (known: {', '.join(SOURCES)})")
    return lab.split.train if source == "train" else lab.split.test


def real_subset(lab: Lab, per_class: int, seed: int, exclude: np.ndarray | None = None,
                source: str = "train") -> np.ndarray:
    """``per_class`` indices per class of the ``source`` split (all of a class when it has fewer), none of
    ``exclude``."""
    labels = lab.dataset.labels.numpy()
    part = split_part(lab, source)
    pool = part if exclude is None else np.setdiff1d(part, exclude)
    smallest = int(np.bincount(labels[pool], minlength=lab.n_classes).min())
    if smallest == 0:
        raise ValueError(f"a class has no {source} images left for a disjoint reference set; "
                         "lower the images per class")
    return per_class_subset(labels, pool, min(per_class, smallest), seed)


def reference_subset(lab: Lab, originals: np.ndarray, per_class: int, seed: int, reference: str,
                     source: str = "train") -> np.ndarray:
    """The real reference set: ``originals`` ("same") or ``per_class`` other images per class of the ``source``
    split ("disjoint")."""
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r} (known: {', '.join(REFERENCES)})")
    return originals if reference == "same" else real_subset(lab, per_class, seed + 1, exclude=originals, source=source)

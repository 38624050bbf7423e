"""Dataclass configs, one comment per field, and named presets (``tiny`` for tests, ``default``, ``gpu``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

SamplerMethod = Literal["ddim", "ddpm"]


@dataclass
class DataConfig:
    name: str = "digits"  # digits | imagefolder | mnist | fashion-mnist | cifar10
    root: str | None = None  # image folder, or torchvision data root
    image_size: int = 16  # images are resized to image_size × image_size
    channels: int | None = None  # image folders: 1 or 3; None infers from the files
    download: bool = False  # torchvision only: fetch the files if they are missing
    split_seed: int = 0  # seed of the fixed stratified train / val / test split
    val_fraction: float = 0.2  # share of the data held out for validation
    test_fraction: float = 0.2  # share of the data held out for testing


@dataclass
class UNetConfig:
    sample_size: int = 16  # image side in pixels
    channels: int = 1  # image channels
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # channels per resolution level
    attention_levels: tuple[bool, ...] = (False, True, False)  # self-attention per level
    layers_per_block: int = 1  # ResNet blocks per level
    norm_num_groups: int = 8  # GroupNorm groups
    attention_head_dim: int = 32  # channels per attention head
    num_classes: int | None = 10  # class-conditional when set; one extra embedding is the "no class" token


@dataclass
class GeneratorTrainConfig:
    steps: int = 4000  # optimizer steps
    batch_size: int = 128  # images per step
    lr: float = 5e-4  # AdamW peak learning rate
    warmup_steps: int = 200  # linear learning-rate warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # gradient-norm clip
    ema_decay: float = 0.999  # EMA of the weights (the shipped weights are the EMA)
    label_dropout: float = 0.1  # probability of the "no class" token, for classifier-free guidance
    num_train_timesteps: int = 1000  # T
    beta_start: float = 1e-4  # linear β schedule start
    beta_end: float = 0.02  # linear β schedule end
    checkpoint_every: int = 500  # steps between resumable checkpoints
    seed: int = 0  # seed of weights, batches and noise


@dataclass
class SamplerConfig:
    method: SamplerMethod = "ddim"  # ddim (deterministic for eta = 0) or ddpm ancestral
    n_steps: int = 50  # DDIM steps spread over [0, t]; DDPM always takes t steps
    guidance_scale: float = 0.0  # classifier-free guidance w; 0 = plain conditional
    eta: float = 0.0  # DDIM stochasticity (0 = ODE)
    clip_sample: bool = True  # clip the predicted x̂_0 to [-1, 1] at every step


@dataclass
class FeatureConfig:
    width: int = 32  # channels of the first conv block (doubled twice)
    feature_dim: int = 128  # size d of the penultimate feature
    epochs: int = 30  # training epochs on the real training split
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 5e-4  # Adam weight decay
    augment: bool = True  # random shift / rotation during training
    seed: int = 0  # seed of weights and batches


@dataclass
class Preset:
    """A named bundle of configs."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    generator: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)


def _tiny() -> Preset:
    return Preset(
        unet=UNetConfig(block_out_channels=(16, 32), attention_levels=(False, True), attention_head_dim=16),
        generator=GeneratorTrainConfig(steps=20, batch_size=32, warmup_steps=2, checkpoint_every=10),
        sampler=SamplerConfig(n_steps=5),
        features=FeatureConfig(width=8, feature_dim=32, epochs=2),
    )


def _gpu() -> Preset:
    return Preset(
        unet=UNetConfig(block_out_channels=(64, 128, 128), layers_per_block=2),
        generator=GeneratorTrainConfig(steps=20000, batch_size=256),
    )


PRESETS = {"tiny": _tiny, "default": Preset, "gpu": _gpu}


def get_preset(name: str) -> Preset:
    """Return a fresh copy of the named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]()


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return asdict(config)


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict, ignoring unknown keys and restoring tuples."""
    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)

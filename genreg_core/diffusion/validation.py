"""Checks that a generator folder holds a usable model, before and after diffusers loads it.

Before: the scheduler config (finite β in (0, 1), 1 ≤ T ≤ ``MAX_TIMESTEPS``, integer fields that are integers), the
UNet config (integer fields in sane ranges, a parameter count, found by building the model on the ``meta`` device
without allocating a byte, of at most ``MAX_GENERATOR_PARAMS``) and the safetensors file (every weight the model
expects, with its shape; read from the header, nothing decoded). After: every tensor finite, ᾱ positive and
finite, and one short UNet call returning finite values. Every failure is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from genreg_core.data.datasets import IMAGE_SIZE_RANGE, follow_links_default, resolve_inside

MAX_TIMESTEPS = 100_000  # T of the noise schedule
# a UNet with more parameters is refused before its weights are allocated (500 M fp32 parameters: 2 GB)
MAX_GENERATOR_PARAMS = int(float(os.environ.get("GENREG_MAX_GENERATOR_PARAMS", 500_000_000)))
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
UNET_INT_RANGES = {  # field: (low, high) of the UNet config's integer fields
    "in_channels": (1, 64), "out_channels": (1, 64), "layers_per_block": (1, 32), "norm_num_groups": (1, 1024),
    "attention_head_dim": (1, 4096), "num_class_embeds": (1, 1_000_000), "num_train_timesteps": (1, MAX_TIMESTEPS),
}
MAX_LEVELS, MAX_WIDTH = 8, 8192  # entries of block_out_channels and each one's size


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_config(path: Path, root: Path) -> dict[str, Any]:
    """A JSON config inside the model folder ``root``; ``ValueError`` naming it if it is not a JSON object."""
    real = resolve_inside(path, root, follow_links_default())
    if not real.is_file():
        raise ValueError(f"{path} is missing (a diffusers model folder needs it)")
    try:
        config = json.loads(real.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def check_scheduler_config(config: dict[str, Any], where: str) -> None:
    """1 ≤ T ≤ ``MAX_TIMESTEPS`` (an integer), finite β in (0, 1) with ``beta_start ≤ beta_end``, integer offsets."""
    T = config.get("num_train_timesteps", 1000)
    if not _is_int(T) or not 1 <= T <= MAX_TIMESTEPS:
        raise ValueError(f"{where}: num_train_timesteps must be an integer in [1, {MAX_TIMESTEPS:,}], got {T!r}")
    if "steps_offset" in config and not _is_int(config["steps_offset"]):
        raise ValueError(f"{where}: steps_offset must be an integer, got {config['steps_offset']!r}")
    betas = {k: config.get(k, d) for k, d in (("beta_start", 0.0001), ("beta_end", 0.02))}
    for name, value in betas.items():
        if not _is_number(value) or not math.isfinite(value) or not 0 < value < 1:
            raise ValueError(f"{where}: {name} must be a finite number in (0, 1), got {value!r}")
    if betas["beta_start"] > betas["beta_end"]:
        raise ValueError(f"{where}: beta_start {betas['beta_start']} is larger than beta_end {betas['beta_end']}")
    trained = config.get("trained_betas")
    if trained is not None:
        if not isinstance(trained, list) or len(trained) != T:
            raise ValueError(f"{where}: trained_betas must be a list of num_train_timesteps ({T}) numbers")
        if not all(_is_number(b) and math.isfinite(b) and 0 < b < 1 for b in trained):
            raise ValueError(f"{where}: trained_betas must all be finite numbers in (0, 1)")


def check_schedule(scheduler, where: str) -> None:
    """ᾱ of the built schedule: finite and in (0, 1] at every step (a zero would divide the samplers by zero)."""
    alpha_bar = scheduler.alphas_cumprod
    if not torch.isfinite(alpha_bar).all() or not (alpha_bar > 0).all() or not (alpha_bar <= 1).all():
        raise ValueError(f"{where}: the noise schedule's ᾱ is not finite and positive at every step "
                         f"(min {float(alpha_bar.min()):.3g}); use fewer steps or smaller betas")


def check_unet_config(config: dict[str, Any], where: str) -> None:
    """Integer fields that are integers in sane ranges, before anything is built from them."""
    for name, (low, high) in UNET_INT_RANGES.items():
        value = config.get(name)
        if value is None and name in ("attention_head_dim", "num_class_embeds", "num_train_timesteps"):
            continue
        if name == "norm_num_groups" and value is None:
            continue
        if not _is_int(value) or not low <= value <= high:
            raise ValueError(f"{where}: {name} must be an integer in [{low:,}, {high:,}], got {value!r}")
    if config["in_channels"] != config["out_channels"]:
        raise ValueError(f"{where}: in_channels {config['in_channels']} and out_channels {config['out_channels']} "
                         "differ; genreg needs an ε-predicting UNet")
    size = config.get("sample_size")
    sides = size if isinstance(size, list) else [size]
    low, high = IMAGE_SIZE_RANGE
    if not sides or len(sides) > 2 or not all(_is_int(s) and low <= s <= high for s in sides):
        raise ValueError(f"{where}: sample_size must be an integer in [{low}, {high}], got {size!r}")
    widths = config.get("block_out_channels")
    if (not isinstance(widths, list) or not 1 <= len(widths) <= MAX_LEVELS
            or not all(_is_int(w) and 1 <= w <= MAX_WIDTH for w in widths)):
        raise ValueError(f"{where}: block_out_channels must be a list of 1 to {MAX_LEVELS} integers in "
                         f"[1, {MAX_WIDTH}], got {widths!r}")


def meta_unet(config: dict[str, Any], where: str):
    """The UNet of ``config`` built on the ``meta`` device (shapes only, no memory); ``ValueError`` if its
    parameter count exceeds ``MAX_GENERATOR_PARAMS`` or diffusers refuses the config."""
    from diffusers import UNet2DModel

    check_unet_config(config, where)
    try:
        with torch.device("meta"):
            unet = UNet2DModel.from_config(config)
    except Exception as exc:  # diffusers raises ValueError, TypeError, KeyError... for a config it cannot build
        raise ValueError(f"{where}: diffusers cannot build a UNet2DModel from it "
                         f"({type(exc).__name__}: {exc})") from exc
    n_params = sum(p.numel() for p in unet.parameters())
    if n_params > MAX_GENERATOR_PARAMS:
        raise ValueError(f"{where}: the UNet would have {n_params:,} parameters, more than the limit of "
                         f"{MAX_GENERATOR_PARAMS:,} (GENREG_MAX_GENERATOR_PARAMS); refused before allocating it")
    return unet


def check_weight_file(weights: Path, root: Path, expected: dict[str, torch.Size]) -> None:
    """The safetensors file holds exactly the tensors ``expected`` (name → shape), read from its header."""
    from safetensors import safe_open

    real = resolve_inside(weights, root, follow_links_default())
    if not real.is_file():
        raise ValueError(f"{weights} is missing: the model folder has no safetensors weights (genreg reads only "
                         f"{WEIGHTS_NAME})")
    try:
        with safe_open(str(real), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # safetensors raises SafetensorError, OSError...
        raise ValueError(f"{weights} is not a readable safetensors file: {exc}") from exc
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise ValueError(f"{weights} lacks {len(missing)} of the model's {len(expected)} weights (e.g. "
                         f"{', '.join(missing[:3])}); genreg never fills missing weights at random")
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise ValueError(f"{weights} holds {len(unexpected)} tensors the model does not have (e.g. "
                         f"{', '.join(unexpected[:3])}); it does not fit its config.json")
    wrong = [k for k in sorted(expected) if tuple(expected[k]) != shapes[k]]
    if wrong:
        raise ValueError(f"{weights}: {len(wrong)} weights have the wrong shape (e.g. {wrong[0]}: "
                         f"{list(shapes[wrong[0]])}, the config asks for {list(expected[wrong[0]])})")


def check_loaded_unet(unet, loading_info: dict[str, list] | None, where: str) -> None:
    """After loading: nothing left at random initialisation, every tensor finite, and a finite probe."""
    missing = (loading_info or {}).get("missing_keys") or []
    if missing:
        raise ValueError(f"{where}: {len(missing)} weights are missing (e.g. {missing[0]}); genreg never fills "
                         "missing weights at random")
    bad = [name for name, t in unet.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{where}: {len(bad)} weight tensors hold NaN or infinite values (e.g. {bad[0]})")
    probe_unet(unet, where)


def probe_unet(unet, where: str) -> None:
    """One UNet call on a seeded 1-image batch at a middle step must return finite values of the input's shape."""
    config = unet.config
    size = config.sample_size if isinstance(config.sample_size, int) else tuple(config.sample_size)
    shape = (1, config.in_channels) + ((size, size) if isinstance(size, int) else size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(next(unet.parameters()).device)
    timestep = torch.tensor([500], device=x.device)
    labels = None if config.num_class_embeds is None else torch.zeros(1, dtype=torch.long, device=x.device)
    try:
        with torch.inference_mode():
            out = unet(x, timestep, class_labels=labels).sample
    except Exception as exc:  # a config diffusers builds but cannot run
        raise ValueError(f"{where}: a probe call of the UNet failed ({type(exc).__name__}: {exc})") from exc
    if out.shape != x.shape or not torch.isfinite(out).all():
        raise ValueError(f"{where}: a probe call of the UNet returned non-finite values or the wrong shape "
                         f"({list(out.shape)}); the model is broken")

"""The class-conditional diffusion model: building, saving and loading (diffusers format).

A generator is a diffusers ``UNet2DModel`` (ε-prediction) plus a ``DDPMScheduler`` that holds the
noise schedule (Ho et al. 2020, "Denoising Diffusion Probabilistic Models": T = 1000, linear β).
It is saved as a ``DDPMPipeline`` folder (``model_index.json``, ``unet/``, ``scheduler/``, all
safetensors) plus a ``genreg.json`` with our metadata, so diffusers can load it on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genreg_core.config import GeneratorTrainConfig, UNetConfig
from genreg_core.diffusion.acceleration import Precision, check_compile_flag, compile_module, resolve_precision
from genreg_core.diffusion.validation import (
    WEIGHTS_NAME,
    check_loaded_unet,
    check_schedule,
    check_scheduler_config,
    check_weight_file,
    meta_unet,
    read_config,
)
from genreg_core.library_log import captured_library_logs, folded

DEFAULT_GENERATOR_DIR = Path(__file__).parents[1] / "assets" / "digits-ddpm"
# the shipped generator of each embedded dataset; any other dataset falls back to the digits model
SHIPPED_GENERATORS = {"digits": DEFAULT_GENERATOR_DIR,
                      "fashion-mnist": Path(__file__).parents[1] / "assets" / "fashion-mnist-ddpm"}
# (ours) an early checkpoint of the same training run: the generator-quality dial for teaching
EARLY_GENERATORS = {"fashion-mnist": Path(__file__).parents[1] / "assets" / "fashion-mnist-ddpm-early"}


def shipped_generator_dir(dataset: str = "digits", early: bool = False) -> Path:
    """The folder of the generator shipped for ``dataset`` (its early checkpoint when ``early``)."""
    if early:
        if dataset not in EARLY_GENERATORS:
            raise ValueError(f"no early generator is shipped for dataset {dataset!r} "
                             f"(there is one for: {', '.join(EARLY_GENERATORS)})")
        return EARLY_GENERATORS[dataset]
    return SHIPPED_GENERATORS.get(dataset, DEFAULT_GENERATOR_DIR)
METADATA_FILE = "genreg.json"


@dataclass
class Generator:
    """A frozen diffusion model: the UNet, its noise schedule and what we know about its classes."""

    unet: Any  # diffusers.UNet2DModel
    scheduler: Any  # diffusers.DDPMScheduler (only its schedule is used)
    class_names: list[str] | None = None  # None for an unconditional model without metadata
    null_class: int | None = None  # label of the "no class" embedding, for classifier-free guidance
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it was loaded from
    precision: Precision = "auto"  # UNet autocast when sampling: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool | None = None  # torch.compile the UNet when sampling; None: on CUDA for large jobs, never on CPU
    _compiled_unet: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def class_fidelity(self) -> float | None:
        """The measured class fidelity its ``genreg.json`` records (share of samples an outside classifier assigns
        to the requested class, ``experiments.fidelity``), or None when unmeasured or not a share in [0, 1]."""
        value = self.metadata.get("class_fidelity")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            return None
        return float(value)

    @property
    def conditional(self) -> bool:
        return self.unet.config.num_class_embeds is not None

    @property
    def num_classes(self) -> int | None:
        if not self.conditional:
            return None
        n = self.unet.config.num_class_embeds
        return n - 1 if self.null_class is not None else n

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def image_size(self) -> int:
        size = self.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0])

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def alpha_bar(self, step: int) -> float:
        """ᾱ at step ``step`` ∈ [0, T]; step s uses the scheduler's index s − 1 and ᾱ(0) = 1."""
        if step == 0:
            return 1.0
        return float(self.scheduler.alphas_cumprod[step - 1])

    def compiled_unet(self):
        """The UNet under ``torch.compile``, made once per generator: its warm-up is paid once (the app keeps
        generators in ``st.cache_resource``, so once per process)."""
        if self._compiled_unet is None:
            self._compiled_unet = compile_module(self.unet)
        return self._compiled_unet

    def to(self, device: torch.device | str) -> Generator:
        self.unet.to(device)
        return self


def build_unet(config: UNetConfig):
    """A diffusers ``UNet2DModel`` from our config; conditional models get one extra "no class" embedding."""
    from diffusers import UNet2DModel

    if len(config.attention_levels) != len(config.block_out_channels):
        raise ValueError("attention_levels needs one entry per block_out_channels level")
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention_levels))
    return UNet2DModel(
        sample_size=config.sample_size,
        in_channels=config.channels,
        out_channels=config.channels,
        block_out_channels=config.block_out_channels,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_num_groups,
        attention_head_dim=config.attention_head_dim,
        num_class_embeds=None if config.num_classes is None else config.num_classes + 1,
    )


def build_scheduler(config: GeneratorTrainConfig):
    """The DDPM noise schedule: T steps, linear β from ``beta_start`` to ``beta_end``."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule="linear",
        prediction_type="epsilon",
    )


def save_generator(generator: Generator, out_dir: str | Path) -> Path:
    """Write a ``DDPMPipeline`` folder (safetensors) plus ``genreg.json``."""
    from diffusers import DDPMPipeline

    out_dir = Path(out_dir)
    DDPMPipeline(unet=generator.unet, scheduler=generator.scheduler).save_pretrained(out_dir, safe_serialization=True)
    metadata = dict(generator.metadata, class_names=generator.class_names, null_class=generator.null_class)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return out_dir


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / METADATA_FILE
    if not path.exists():
        return {}
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(metadata).__name__}")
    return metadata


def _check_metadata(unet, metadata: dict[str, Any], path: Path) -> None:
    """``class_names`` and ``null_class`` of ``genreg.json`` must fit the UNet's class embeddings."""
    n_embeds = unet.config.num_class_embeds
    names, null = metadata.get("class_names"), metadata.get("null_class")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"{path / METADATA_FILE}: class_names must be a list of strings")
    if null is not None:
        if n_embeds is None or isinstance(null, bool) or not isinstance(null, int) or not 0 <= null < n_embeds:
            limit = "the model is unconditional" if n_embeds is None else f"an integer in [0, {n_embeds - 1}]"
            raise ValueError(f"{path / METADATA_FILE}: null_class {null!r} is out of range ({limit})")
    if names is not None and n_embeds is not None and len(names) != n_embeds - (null is not None):
        raise ValueError(f"{path / METADATA_FILE}: {len(names)} class_names but the model has "
                         f"{n_embeds - (null is not None)} classes")


def _looks_like_hub_id(source: str) -> bool:
    """``owner/name`` whose owner is not a local folder: anything else that does not exist is a missing path."""
    parts = source.split("/")
    return (len(parts) == 2 and all(parts) and not source.startswith((".", "~"))
            and not Path(parts[0]).exists() and all(c.isalnum() or c in "-_." for c in source.replace("/", "")))


def _checked_local_unet(folder: Path, unet_dir: Path) -> dict[str, Any]:
    """The UNet config of a local folder, after its config and its weight file's header pass every check."""
    config_path = unet_dir / "config.json"
    unet_config = read_config(config_path, folder)
    expected = {k: v.shape for k, v in meta_unet(unet_config, str(config_path)).state_dict().items()}
    check_weight_file(unet_dir / WEIGHTS_NAME, folder, expected)
    return unet_config


def _load_local(path: Path):
    """(UNet, its loading info, scheduler) of a local ``DDPMPipeline`` or ``UNet2DModel`` folder, checked first."""
    from diffusers import DDPMScheduler, UNet2DModel

    folder = path.resolve()
    if (path / "model_index.json").exists():
        _checked_local_unet(folder, folder / "unet")
        sched_path = folder / "scheduler" / "scheduler_config.json"
        if (folder / "scheduler").is_dir():
            sched_config = read_config(sched_path, folder)
            check_scheduler_config(sched_config, str(sched_path))
            scheduler = DDPMScheduler.from_config(sched_config)
        else:
            scheduler = DDPMScheduler()
        unet, info = UNet2DModel.from_pretrained(folder, subfolder="unet", use_safetensors=True,
                                                 low_cpu_mem_usage=False, output_loading_info=True)
        return unet, info, scheduler
    unet_config = _checked_local_unet(folder, folder)
    scheduler = DDPMScheduler(num_train_timesteps=unet_config.get("num_train_timesteps") or 1000)
    unet, info = UNet2DModel.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False,
                                             output_loading_info=True)
    return unet, info, scheduler


def _load_hub(source: str):
    """(UNet, its loading info, scheduler) of a hub id; the configs are checked before the weights are loaded."""
    from diffusers import DDPMScheduler, UNet2DModel

    meta_unet(dict(UNet2DModel.load_config(source, subfolder="unet")), f"{source} unet/config.json")
    sched_config = dict(DDPMScheduler.load_config(source, subfolder="scheduler"))
    check_scheduler_config(sched_config, f"{source} scheduler/scheduler_config.json")
    unet, info = UNet2DModel.from_pretrained(source, subfolder="unet", use_safetensors=True, low_cpu_mem_usage=False,
                                             output_loading_info=True)
    return unet, info, DDPMScheduler.from_config(sched_config)


def load_generator(source: str | Path | None = None, device: torch.device | str = "cpu",
                   precision: Precision = "auto", compile: bool | None = None,
                   dataset: str = "digits") -> Generator:
    """Load a generator in eval mode, frozen, after checking it (``genreg_core.diffusion.validation``).

    ``source`` is ``None`` (the model shipped for ``dataset``; the digits one for a dataset without its own),
    a local ``DDPMPipeline`` folder, a local
    ``UNet2DModel`` folder (default DDPM schedule), or a hub id (needs the network). Only safetensors
    weights are read, and only when every weight the model expects is there; a missing, corrupt or broken
    checkpoint (non-finite weights or schedule, T outside [1, 100,000], a UNet too large to allocate, a probe
    call with non-finite output) raises ``ValueError`` that names the path, with the library's reason folded in.
    ``precision`` and ``compile`` say how the samplers run its UNet (``genreg_core.diffusion.acceleration``).
    """
    import diffusers  # noqa: F401 - imported before its loggers are captured (it configures them on import)

    resolve_precision(precision, torch.device(device))
    check_compile_flag(compile)

    path = Path(source) if source is not None else shipped_generator_dir(dataset)
    where = str(path) if path.exists() else str(source)
    if not (path.is_dir() and ((path / "model_index.json").exists() or (path / "config.json").exists())):
        if path.exists():
            raise ValueError(f"{path} is not a diffusers UNet2DModel or DDPMPipeline folder")
        if source is None or not _looks_like_hub_id(str(source)):
            raise ValueError(f"generator {source} does not exist (no such folder)")
    with captured_library_logs() as logs:
        try:
            unet, info, scheduler = _load_local(path) if path.exists() else _load_hub(str(source))
            metadata = _read_metadata(path) if path.is_dir() else {}
            _check_metadata(unet, metadata, path)
            check_schedule(scheduler, where)
            unet.eval().requires_grad_(False).to(device)
            check_loaded_unet(unet, info, where)
        except ValueError as exc:
            raise ValueError(f"cannot load generator from {where}: {exc}") from exc
        except Exception as exc:  # diffusers raises OSError, EnvironmentError, safetensors errors...
            if not path.exists():
                raise ValueError(f"generator {source}: there is no such local folder, and loading it as a hub id "
                                 f"failed: {exc}{folded(logs)}") from exc
            raise ValueError(f"cannot load generator from {path}: {exc}{folded(logs)}") from exc
    return Generator(
        unet=unet,
        scheduler=scheduler,
        class_names=metadata.get("class_names"),
        null_class=metadata.get("null_class"),
        metadata=metadata,
        source=str(source) if source is not None else f"shipped {path.name.removesuffix('-ddpm')} model",
        precision=precision,
        compile=compile,
    )

"""Training loop of the class-conditional diffusion model: AdamW, EMA weights, checkpoint and resume.

The loss is the simple ε-prediction loss of DDPM (Ho et al. 2020, eq. 14):
``‖ε − ε_θ(sqrt(ᾱ_t)·x_0 + sqrt(1−ᾱ_t)·ε, t, y)‖²`` with the label replaced by the "no class" token
with probability ``label_dropout`` (Ho & Salimans 2022, classifier-free guidance).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from genreg_core.config import GeneratorTrainConfig, UNetConfig
from genreg_core.device import seeded_rng
from genreg_core.diffusion.acceleration import autocast, compile_module, resolve_precision
from genreg_core.diffusion.model import Generator, build_scheduler, build_unet, save_generator
from genreg_core.distributed import Parallel

StepCallback = Callable[[int, dict[str, float]], None]


def _lr_at(step: int, config: GeneratorTrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    d = min(decay, (1 + step) / (10 + step))  # warm-up of the EMA decay
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1 - d)


def _save_checkpoint(ckpt_dir: Path, unet, ema, optimizer, rng: torch.Generator, step: int) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, ckpt_dir / "unet.safetensors")
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, ckpt_dir / "ema.safetensors")
    torch.save(optimizer.state_dict(), ckpt_dir / "optimizer.pt")
    save_file({"rng": rng.get_state()}, ckpt_dir / "rng.safetensors")
    (ckpt_dir / "state.json").write_text(json.dumps({"step": step}))


def _load_checkpoint(ckpt_dir: Path, unet, ema, optimizer, rng: torch.Generator) -> int:
    try:
        unet.load_state_dict(load_file(ckpt_dir / "unet.safetensors"))
        ema.load_state_dict(load_file(ckpt_dir / "ema.safetensors"))
        optimizer.load_state_dict(torch.load(ckpt_dir / "optimizer.pt", weights_only=True))
        rng.set_state(load_file(ckpt_dir / "rng.safetensors")["rng"])
        return int(json.loads((ckpt_dir / "state.json").read_text())["step"])
    except Exception as exc:
        raise ValueError(f"cannot resume from checkpoint {ckpt_dir}: {exc}") from exc


def train_generator(
    images: torch.Tensor,
    labels: torch.Tensor,
    unet_config: UNetConfig,
    train_config: GeneratorTrainConfig,
    out_dir: str | Path,
    class_names: list[str] | None = None,
    device: torch.device | str = "cpu",
    checkpoint_dir: str | Path | None = None,
    on_step: StepCallback | None = None,
    extra_metadata: dict[str, Any] | None = None,
    snapshots: dict[int, str | Path] | None = None,
    parallel: Parallel | None = None,
) -> Generator:
    """Train a diffusion model on ``images`` (N, C, H, W) in [-1, 1] and save its EMA to ``out_dir``.

    Resumes from ``checkpoint_dir`` (default ``out_dir/checkpoint``) when a checkpoint is there.
    ``snapshots`` maps a step to a folder: the EMA weights after that step are saved there as well, in the
    same format (an early, weaker generator from the same run; its metadata records ``snapshot_step``).
    ``on_step(step, {"loss", "lr"})`` is called after every step. On CUDA batches and noise are drawn on the
    device from a seeded device generator and the forward runs under ``train_config.precision`` (bf16 autocast
    by default); on the CPU the draws and the fp32 maths are those of the CPU generator as before.

    ``parallel`` (``genreg_core.distributed``) with several processes trains data-parallel through Accelerate:
    every process draws the same batch, trains on its slice of it (``batch_size`` must divide by the number of
    processes) and DDP averages the gradients, so a step is the single-process step of the whole batch; only the
    main process calls ``on_step`` and writes checkpoints, snapshots and ``out_dir``.
    """
    if images.ndim != 4 or images.shape[1] != unet_config.channels or images.shape[-1] != unet_config.sample_size:
        raise ValueError(f"images of shape {tuple(images.shape)} do not fit the UNet config {unet_config}")
    conditional = unet_config.num_classes is not None
    if conditional and int(labels.max()) >= unet_config.num_classes:
        raise ValueError(f"labels go up to {int(labels.max())} but the UNet has {unet_config.num_classes} classes")
    parallel = parallel or Parallel()
    if train_config.batch_size % parallel.num_processes:
        raise ValueError(f"batch size {train_config.batch_size} does not divide into {parallel.num_processes} "
                         "processes")
    device = parallel.device(torch.device(device))
    resolve_precision(train_config.precision, device)
    if not isinstance(train_config.compile, bool):
        raise ValueError(f"generator training compile must be true or false, got {train_config.compile!r}")
    torch.manual_seed(train_config.seed)
    rng = seeded_rng(train_config.seed, device)
    unet = build_unet(unet_config).to(device).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    scheduler = build_scheduler(train_config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    out_dir = Path(out_dir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out_dir / "checkpoint"
    start = _load_checkpoint(ckpt_dir, unet, ema, optimizer, rng) if (ckpt_dir / "state.json").exists() else 0
    null_class = unet_config.num_classes if conditional else None
    images, labels = images.to(device), labels.to(device)
    model, stepper = parallel.prepare(unet, optimizer)  # the plain pair in one process
    model = compile_module(model) if train_config.compile else model
    started = time.time()
    loss_value = float("nan")
    snapshots = {int(k): Path(v) for k, v in (snapshots or {}).items()}
    for snap_step in snapshots:
        if not 1 <= snap_step <= train_config.steps:
            raise ValueError(f"snapshot step {snap_step} is outside the run's steps 1..{train_config.steps}")

    def metadata_at(step: int) -> dict[str, Any]:
        return {"unet_config": asdict(unet_config), "train_config": asdict(train_config), "final_loss": loss_value,
                "train_seconds_this_session": round(time.time() - started, 1),
                "n_train_images": int(images.shape[0]), **(extra_metadata or {}), "step": step}

    for step in range(start, train_config.steps):
        idx = torch.randint(0, images.shape[0], (train_config.batch_size,), generator=rng, device=rng.device).to(device)
        x0 = images[idx]  # (B, C, H, W)
        eps = torch.randn(x0.shape, generator=rng, device=rng.device).to(device)
        t = torch.randint(0, train_config.num_train_timesteps, (x0.shape[0],), generator=rng,
                          device=rng.device).to(device)
        x_t = scheduler.add_noise(x0, eps, t)
        class_labels = None
        if conditional:
            drop = torch.rand(x0.shape[0], generator=rng, device=rng.device).to(device) < train_config.label_dropout
            class_labels = torch.where(drop, torch.full_like(labels[idx], null_class), labels[idx])
        if parallel.distributed:  # this process's slice of the batch every process drew
            x_t, t, eps = parallel.shard(x_t), parallel.shard(t), parallel.shard(eps)
            class_labels = None if class_labels is None else parallel.shard(class_labels)
        with autocast(train_config.precision, device):
            prediction = model(x_t, t, class_labels=class_labels).sample  # (B, C, H, W)
        loss = F.mse_loss(prediction.float(), eps)
        loss_value = parallel.sample_mean(loss.item(), eps.shape[0])  # the whole batch's loss on every process
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"generator loss became {loss_value} at step {step}")
        lr = _lr_at(step, train_config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        parallel.backward(loss)
        parallel.clip_grad_norm_(unet.parameters(), train_config.grad_clip)
        stepper.step()
        _update_ema(ema, unet, step, train_config.ema_decay)
        if on_step is not None and parallel.is_main:
            on_step(step + 1, {"loss": loss_value, "lr": lr})
        if not parallel.is_main:
            continue
        if (step + 1) % train_config.checkpoint_every == 0 or step + 1 == train_config.steps:
            _save_checkpoint(ckpt_dir, unet, ema, optimizer, rng, step + 1)
        if step + 1 in snapshots:
            early = Generator(copy.deepcopy(ema).cpu(), scheduler, class_names, null_class,
                              {**metadata_at(step + 1), "snapshot_step": step + 1}, str(snapshots[step + 1]))
            save_generator(early, snapshots[step + 1])
    generator = Generator(ema.cpu(), scheduler, class_names, null_class, metadata_at(train_config.steps),
                          str(out_dir))
    if parallel.is_main:
        save_generator(generator, out_dir)
    parallel.wait()
    return generator

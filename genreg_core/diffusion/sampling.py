"""Sampling and reconstruction from an exact reverse start step t (the denoising loop written out).

Notation (Ho et al. 2020; Song et al. 2021, "Denoising Diffusion Implicit Models"): step
s ∈ [0, T], ᾱ_s the cumulative product of (1 − β), ᾱ_0 = 1. Forward process:
``x_s = sqrt(ᾱ_s)·x_0 + sqrt(1 − ᾱ_s)·ε``. Reconstruction at start step t (SDEdit, Meng et al. 2022)
noises x_0 to exactly step t and runs the reverse sampler from t to 0. Unlike diffusers' img2img
``strength``, t is exact: the DDIM grid is ``round(linspace(t, 0, n + 1))``, not a fixed stride.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genreg_core.config import SamplerConfig
from genreg_core.device import seeded_rng
from genreg_core.diffusion.acceleration import (
    BucketedUNet,
    autocast,
    choose_batch_size,
    resolve_compile,
)
from genreg_core.diffusion.model import Generator

ProgressCallback = Callable[[int, int], None]


@dataclass
class ReverseResult:
    """Output of one reverse run: final images and, if asked, the x̂_0 predicted at each step."""

    images: torch.Tensor  # (N, C, H, W) in [-1, 1]
    steps: list[int]  # the steps visited, from t down to 0
    x0_trajectory: torch.Tensor | None = None  # (len(steps) - 1, N, C, H, W)


def step_grid(t: int, sampler: SamplerConfig) -> list[int]:
    """The decreasing list of steps the sampler visits, from ``t`` to 0 (both included)."""
    if t == 0:
        return [0]
    if sampler.method == "ddpm":
        return list(range(t, -1, -1))
    n = max(1, min(sampler.n_steps, t))
    grid = np.round(np.linspace(t, 0, n + 1)).astype(int)
    return [int(s) for s in dict.fromkeys(grid.tolist())]


def predict_eps(generator: Generator, x: torch.Tensor, step: int, labels: torch.Tensor | None,
                guidance_scale: float = 0.0, unet: Callable | None = None) -> torch.Tensor:
    """ε_θ(x_s, s, y), with classifier-free guidance ``ε_c + w (ε_c − ε_∅)`` when ``w > 0``.

    ``unet`` replaces ``generator.unet`` as the network called (a compiled one, say).
    """
    unet = unet if unet is not None else generator.unet
    timestep = torch.full((x.shape[0],), step - 1, device=x.device, dtype=torch.long)
    if not generator.conditional:
        return unet(x, timestep).sample
    if labels is None:
        raise ValueError("this generator is class-conditional: labels are required")
    if guidance_scale == 0.0:
        return unet(x, timestep, class_labels=labels).sample
    if generator.null_class is None:
        raise ValueError("guidance needs a generator trained with label dropout (no 'no class' token known)")
    null = torch.full_like(labels, generator.null_class)
    eps_c, eps_u = unet(torch.cat([x, x]), torch.cat([timestep, timestep]),
                        class_labels=torch.cat([labels, null])).sample.chunk(2)
    return eps_c + guidance_scale * (eps_c - eps_u)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, ab: float, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``x̂_0 = (x_s − sqrt(1 − ᾱ_s) ε̂) / sqrt(ᾱ_s)`` and the ε̂ it implies: with ``clip``, x̂_0 is clipped to
    [-1, 1] and ``ε̂ ← (x_s − sqrt(ᾱ_s) x̂_0) / sqrt(1 − ᾱ_s)``. At ᾱ_s = 1 (s = 0) x̂_0 is x_s and ε̂ is kept."""
    if ab >= 1.0:
        return x, eps
    x0_hat = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    if not clip:
        return x0_hat, eps
    x0_hat = x0_hat.clamp(-1, 1)
    return x0_hat, (x - math.sqrt(ab) * x0_hat) / math.sqrt(1 - ab)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, ab: float, ab_next: float, clip: bool = True,
              sigma: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update from step s to s' (Song et al. 2021, eq. 12), either way in time: ``(x_{s'}, x̂_0)``.

    ``x_{s'} = sqrt(ᾱ_{s'}) x̂_0 + sqrt(1 − ᾱ_{s'} − σ²) ε̂`` with x̂_0, ε̂ from :func:`predict_x0`; the caller adds
    ``σ z`` when σ > 0. At s' = 0 (ᾱ = 1) it returns x̂_0 itself. The sampler, the differentiable chain and the
    inversion all step with this one function.
    """
    x0_hat, eps = predict_x0(x, eps, ab, clip)
    if ab_next >= 1.0:
        return x0_hat, x0_hat
    return math.sqrt(ab_next) * x0_hat + math.sqrt(max(0.0, 1 - ab_next - sigma**2)) * eps, x0_hat


def add_noise(generator: Generator, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    """Forward process to exactly step ``t``: ``sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε``; x_0 itself at t = 0."""
    ab = generator.alpha_bar(t)
    return ab**0.5 * x0 + (1 - ab) ** 0.5 * noise


def reverse_process(generator: Generator, x_t: torch.Tensor, labels: torch.Tensor | None, t: int,
                    sampler: SamplerConfig, rng: torch.Generator | None = None,
                    record_trajectory: bool = False, unet: Callable | None = None) -> ReverseResult:
    """Run the reverse sampler from ``x_t`` at step ``t`` down to step 0.

    DDIM (eq. 12 of Song et al.): ``x_{s'} = sqrt(ᾱ_{s'}) x̂_0 + sqrt(1 − ᾱ_{s'} − σ²) ε̂ + σ z``.
    DDPM ancestral: ``x_{s−1} ~ N(μ̃_s(x_s, x̂_0), β̃_s I)`` (eq. 7 of Ho et al.).
    The UNet runs under ``generator.precision`` (bf16 autocast or plain fp32); the update itself is fp32.
    """
    steps = step_grid(t, sampler)
    ab = {s: generator.alpha_bar(s) for s in steps}  # ᾱ_s as Python floats: no tensor ops on scalars
    x = x_t
    trajectory = []
    with torch.inference_mode():
        for s, s_next in zip(steps[:-1], steps[1:]):
            with autocast(generator.precision, x.device):
                eps = predict_eps(generator, x, s, labels, sampler.guidance_scale, unet)
            eps = eps.float()  # (N, C, H, W); a no-op in fp32
            if sampler.method == "ddpm":
                x0_hat, _ = predict_x0(x, eps, ab[s], sampler.clip_sample)
                if s_next > 0:
                    beta = 1 - ab[s] / ab[s_next]
                    mean = (math.sqrt(ab[s_next]) * beta * x0_hat
                            + math.sqrt(1 - beta) * (1 - ab[s_next]) * x) / (1 - ab[s])
                    x = mean + math.sqrt(beta * (1 - ab[s_next]) / (1 - ab[s])) * _randn_like(x, rng)
            else:
                sigma = sampler.eta * math.sqrt((1 - ab[s_next]) / (1 - ab[s]) * (1 - ab[s] / ab[s_next]))
                x, x0_hat = ddim_step(x, eps, ab[s], ab[s_next], sampler.clip_sample, sigma)
                if sampler.eta > 0 and s_next > 0:
                    x = x + sigma * _randn_like(x, rng)
            if record_trajectory:
                trajectory.append(x0_hat.cpu())
            if s_next == 0:
                x = x0_hat
                break
    traj = torch.stack(trajectory) if record_trajectory and trajectory else None
    return ReverseResult(x.clamp(-1, 1), steps, traj)


def ddim_chain(generator: Generator, x_T: torch.Tensor, labels: torch.Tensor | None, n_steps: int,
               backprop_steps: int | None = None, t: int | None = None, unet: Callable | None = None) -> torch.Tensor:
    """Deterministic DDIM from ``x_T`` at step ``t`` (default T) to ``x_0``, differentiable in ``x_T``.

    Song et al. 2021, eq. 12 with η = 0, on the grid of :func:`step_grid`.

    Each step is :func:`ddim_step` with clipping, the update of :func:`reverse_process`.
    With ``backprop_steps = k`` only the last ``k`` steps backpropagate through the UNet; earlier steps treat
    ``ε_θ`` as a constant but keep the (linear) update differentiable, so ``x_T`` still gets a gradient.
    ``unet`` replaces ``generator.unet`` (a compiled one: the chain then launches a few fused kernels per step).
    """
    steps = step_grid(generator.num_train_timesteps if t is None else t, SamplerConfig(n_steps=n_steps))
    first_with_unet = 0 if backprop_steps is None else max(0, len(steps) - 1 - backprop_steps)
    x = x_T
    for i, (s, s_next) in enumerate(zip(steps[:-1], steps[1:])):
        if i >= first_with_unet:
            eps = predict_eps(generator, x, s, labels, unet=unet)
        else:
            with torch.no_grad():
                eps = predict_eps(generator, x, s, labels, unet=unet)
        x, _ = ddim_step(x, eps, generator.alpha_bar(s), generator.alpha_bar(s_next))
    return x


def _randn_like(x: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    """Noise drawn where ``rng`` lives (the CPU without one), then moved to ``x``'s device."""
    return torch.randn(x.shape, generator=rng, device=rng.device if rng is not None else None).to(x.device)


def draw_noise(shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
    """ε ~ N(0, I) of ``shape`` on ``rng``'s device."""
    return torch.randn(shape, generator=rng, device=rng.device)


def _unet_runner(generator: Generator, n_images: int, n_steps: int, batch_size: int,
                 guidance: bool) -> BucketedUNet | None:
    """A compiled UNet for this job when ``generator.compile`` asks for one (None: call the UNet eagerly)."""
    if not resolve_compile(generator.compile, generator.device, n_images * n_steps):
        return None
    return BucketedUNet(generator.compiled_unet(), batch_size * (2 if guidance else 1))


def check_finite(images: torch.Tensor, generator: Generator) -> torch.Tensor:
    """``images`` if every value is finite, else ``ValueError``: a broken generator's batch is never returned."""
    if not torch.isfinite(images).all():
        n_bad = int((~torch.isfinite(images.flatten(1))).any(dim=1).sum())
        raise ValueError(f"generator {generator.source} produced {n_bad} of {images.shape[0]} images with NaN or "
                         "infinite values; nothing was written")
    return images


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _check_labels(generator: Generator, labels: torch.Tensor | None) -> None:
    if generator.conditional and labels is not None and generator.num_classes is not None:
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= generator.num_classes):
            raise ValueError(f"labels must lie in [0, {generator.num_classes - 1}] for this generator")


def check_sampler(sampler: SamplerConfig) -> None:
    """``ValueError`` for a sampler setting that would give nonsense (unknown method, no steps, w or η < 0, nan)."""
    if sampler.method not in ("ddim", "ddpm"):
        raise ValueError(f"unknown sampler {sampler.method!r} (use ddim or ddpm)")
    if isinstance(sampler.n_steps, bool) or not isinstance(sampler.n_steps, int) or sampler.n_steps < 1:
        raise ValueError(f"sampler steps must be an integer of at least 1, got {sampler.n_steps!r}")
    for name, value in (("guidance scale", sampler.guidance_scale), ("eta", sampler.eta)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number ≥ 0, got {value}")


def _check_start(generator: Generator, labels: torch.Tensor | None, t: int) -> None:
    T = generator.num_train_timesteps
    if not 0 <= t <= T:
        raise ValueError(f"start step t must lie in [0, {T}], got {t}")
    _check_labels(generator, labels)


def _start_point(generator: Generator, x0: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """x_t where the reverse process starts: the forward process at t, pure noise ε at t = T."""
    return eps if t == generator.num_train_timesteps else add_noise(generator, x0, t, eps)


def reconstruct(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, t: int,
                sampler: SamplerConfig | None = None, seed: int = 0, batch_size: int | None = None,
                noise: torch.Tensor | None = None, on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """Noise ``x0`` (N, C, H, W) to exactly step ``t`` and run the reverse process back to 0.

    ``t = 0`` returns ``x0`` unchanged; ``t = T`` ignores ``x0`` (ᾱ_T ≈ 4e-5) and is plain generation
    from pure noise. The same ``seed`` (or the same ``noise``) gives the same output on the same device.
    ``batch_size`` None picks it from the device (``acceleration.choose_batch_size``: 256 on the CPU).
    """
    sampler = sampler or SamplerConfig()
    check_sampler(sampler)
    _check_start(generator, labels, t)
    if t == 0:
        return x0.clone()
    device = generator.device
    if batch_size is None:
        batch_size = choose_batch_size(generator.unet, device, sampler.guidance_scale > 0)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = seeded_rng(seed, device)
    if noise is None:
        noise = draw_noise(tuple(x0.shape), rng)
    runner = _unet_runner(generator, x0.shape[0], len(step_grid(t, sampler)) - 1, batch_size,
                          sampler.guidance_scale > 0)
    out = torch.empty_like(x0)
    n_batches = (x0.shape[0] + batch_size - 1) // batch_size
    for i, sl in enumerate(_batches(x0.shape[0], batch_size)):
        x_t = _start_point(generator, x0[sl].to(device), t, noise[sl].to(device))
        batch_labels = labels[sl].to(device) if labels is not None else None
        out[sl] = check_finite(reverse_process(generator, x_t, batch_labels, t, sampler, rng, unet=runner).images,
                               generator).to(out.device)
        if on_progress is not None:
            on_progress(i + 1, n_batches)
    return out


@dataclass
class ReconstructionView:
    """What the reverse-step page shows for a batch at one t."""

    x_t: torch.Tensor  # (N, C, H, W) the noised inputs (pure noise at t = T)
    reconstructions: torch.Tensor  # (N, C, H, W)
    steps: list[int]  # the sampler's steps, from t to 0
    x0_trajectory: torch.Tensor | None  # (len(steps) - 1, N, C, H, W) predicted x̂_0 along the way


def reconstruct_view(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, t: int,
                     sampler: SamplerConfig | None = None, seed: int = 0) -> ReconstructionView:
    """Like :func:`reconstruct` (same seed, same output) but also returns x_t and the x̂_0 trajectory."""
    sampler = sampler or SamplerConfig()
    check_sampler(sampler)
    _check_start(generator, labels, t)
    if t == 0:
        return ReconstructionView(x0.clone(), x0.clone(), [0], None)
    device = generator.device
    rng = seeded_rng(seed, device)
    noise = draw_noise(tuple(x0.shape), rng)
    x_t = _start_point(generator, x0.to(device), t, noise.to(device))
    result = reverse_process(generator, x_t, labels.to(device) if labels is not None else None, t, sampler, rng,
                             record_trajectory=True)
    check_finite(result.images, generator)
    return ReconstructionView(x_t.cpu().clamp(-1, 1), result.images.cpu(), result.steps, result.x0_trajectory)


def reconstruct_many(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, t_values: list[int],
                     sampler: SamplerConfig | None = None, seed: int = 0,
                     on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """Reconstructions of the same images from each t with one shared noise draw: (len(t), N, C, H, W)."""
    noise = draw_noise(tuple(x0.shape), seeded_rng(seed, generator.device))
    out = []
    for i, t in enumerate(t_values):
        out.append(reconstruct(generator, x0, labels, t, sampler, seed, noise=noise).cpu())
        if on_progress is not None:
            on_progress(i + 1, len(t_values))
    return torch.stack(out)


def sample_images(generator: Generator, labels: torch.Tensor | None, n: int | None = None,
                  sampler: SamplerConfig | None = None, seed: int = 0, batch_size: int | None = None,
                  on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """Generate images from pure noise: one per label (conditional), or ``n`` (unconditional)."""
    if labels is None and n is None:
        raise ValueError("give labels (conditional) or n (unconditional)")
    n = int(labels.shape[0]) if labels is not None else int(n)
    shape = (n, generator.channels, generator.image_size, generator.image_size)
    x0 = torch.zeros(shape)
    return reconstruct(generator, x0, labels, generator.num_train_timesteps, sampler, seed, batch_size,
                       on_progress=on_progress)


def class_labels(n_classes: int, per_class: int) -> torch.Tensor:
    """``[0]*per_class + [1]*per_class + ...`` as int64."""
    return torch.arange(n_classes).repeat_interleave(per_class)

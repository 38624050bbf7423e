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
from genreg_core.diffusion import Generator

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
                guidance_scale: float = 0.0) -> torch.Tensor:
    """ε_θ(x_s, s, y), with classifier-free guidance ``ε_c + w (ε_c − ε_∅)`` when ``w > 0``."""
    timestep = torch.full((x.shape[0],), step - 1, device=x.device, dtype=torch.long)
    if not generator.conditional:
        return generator.unet(x, timestep).sample
    if labels is None:
        raise ValueError("this generator is class-conditional: labels are required")
    if guidance_scale == 0.0:
        return generator.unet(x, timestep, class_labels=labels).sample
    if generator.null_class is None:
        raise ValueError("guidance needs a generator trained with label dropout (no 'no class' token known)")
    null = torch.full_like(labels, generator.null_class)
    eps_c, eps_u = generator.unet(torch.cat([x, x]), torch.cat([timestep, timestep]),
                                  class_labels=torch.cat([labels, null])).sample.chunk(2)
    return eps_c + guidance_scale * (eps_c - eps_u)


def add_noise(generator: Generator, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    """Forward process to exactly step ``t``: ``sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε``; x_0 itself at t = 0."""
    ab = generator.alpha_bar(t)
    return ab**0.5 * x0 + (1 - ab) ** 0.5 * noise


def reverse_process(generator: Generator, x_t: torch.Tensor, labels: torch.Tensor | None, t: int,
                    sampler: SamplerConfig, rng: torch.Generator | None = None,
                    record_trajectory: bool = False) -> ReverseResult:
    """Run the reverse sampler from ``x_t`` at step ``t`` down to step 0.

    DDIM (eq. 12 of Song et al.): ``x_{s'} = sqrt(ᾱ_{s'}) x̂_0 + sqrt(1 − ᾱ_{s'} − σ²) ε̂ + σ z``.
    DDPM ancestral: ``x_{s−1} ~ N(μ̃_s(x_s, x̂_0), β̃_s I)`` (eq. 7 of Ho et al.).
    """
    steps = step_grid(t, sampler)
    ab = {s: generator.alpha_bar(s) for s in steps}  # ᾱ_s as Python floats: no tensor ops on scalars
    x = x_t
    trajectory = []
    with torch.inference_mode():
        for s, s_next in zip(steps[:-1], steps[1:]):
            eps = predict_eps(generator, x, s, labels, sampler.guidance_scale)
            x0_hat = (x - math.sqrt(1 - ab[s]) * eps) / math.sqrt(ab[s])
            if sampler.clip_sample:
                x0_hat = x0_hat.clamp(-1, 1)
                eps = (x - math.sqrt(ab[s]) * x0_hat) / math.sqrt(1 - ab[s])
            if record_trajectory:
                trajectory.append(x0_hat.cpu())
            if s_next == 0:
                x = x0_hat
                break
            if sampler.method == "ddpm":
                beta = 1 - ab[s] / ab[s_next]
                mean = (math.sqrt(ab[s_next]) * beta * x0_hat
                        + math.sqrt(1 - beta) * (1 - ab[s_next]) * x) / (1 - ab[s])
                x = mean + math.sqrt(beta * (1 - ab[s_next]) / (1 - ab[s])) * _randn_like(x, rng)
            else:
                sigma = sampler.eta * math.sqrt((1 - ab[s_next]) / (1 - ab[s]) * (1 - ab[s] / ab[s_next]))
                x = math.sqrt(ab[s_next]) * x0_hat + math.sqrt(max(0.0, 1 - ab[s_next] - sigma**2)) * eps
                if sampler.eta > 0:
                    x = x + sigma * _randn_like(x, rng)
    traj = torch.stack(trajectory) if record_trajectory and trajectory else None
    return ReverseResult(x.clamp(-1, 1), steps, traj)


def ddim_chain(generator: Generator, x_T: torch.Tensor, labels: torch.Tensor | None, n_steps: int,
               backprop_steps: int | None = None, t: int | None = None) -> torch.Tensor:
    """Deterministic DDIM from ``x_T`` at step ``t`` (default T) to ``x_0``, differentiable in ``x_T``.

    Song et al. 2021, eq. 12 with η = 0, on the grid of :func:`step_grid`.

    Each step: ``x̂_0 = clip((x_s − sqrt(1 − ᾱ_s) ε̂) / sqrt(ᾱ_s))``, ``ε̂ ← (x_s − sqrt(ᾱ_s) x̂_0) / sqrt(1 − ᾱ_s)``,
    ``x_{s'} = sqrt(ᾱ_{s'}) x̂_0 + sqrt(1 − ᾱ_{s'}) ε̂`` — the update of ``sampling.reverse_process``.
    With ``backprop_steps = k`` only the last ``k`` steps backpropagate through the UNet; earlier steps treat
    ``ε_θ`` as a constant but keep the (linear) update differentiable, so ``x_T`` still gets a gradient.
    """
    steps = step_grid(generator.num_train_timesteps if t is None else t, SamplerConfig(n_steps=n_steps))
    first_with_unet = 0 if backprop_steps is None else max(0, len(steps) - 1 - backprop_steps)
    x = x_T
    for i, (s, s_next) in enumerate(zip(steps[:-1], steps[1:])):
        if i >= first_with_unet:
            eps = predict_eps(generator, x, s, labels)
        else:
            with torch.no_grad():
                eps = predict_eps(generator, x, s, labels)
        ab, ab_next = generator.alpha_bar(s), generator.alpha_bar(s_next)
        x0_hat = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
        eps = (x - math.sqrt(ab) * x0_hat) / math.sqrt(1 - ab)
        x = x0_hat if s_next == 0 else math.sqrt(ab_next) * x0_hat + math.sqrt(1 - ab_next) * eps
    return x


def _randn_like(x: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=rng).to(x.device)


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _check_labels(generator: Generator, labels: torch.Tensor | None) -> None:
    if generator.conditional and labels is not None and generator.num_classes is not None:
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= generator.num_classes):
            raise ValueError(f"labels must lie in [0, {generator.num_classes - 1}] for this generator")


def _check_start(generator: Generator, labels: torch.Tensor | None, t: int) -> None:
    T = generator.num_train_timesteps
    if not 0 <= t <= T:
        raise ValueError(f"start step t must lie in [0, {T}], got {t}")
    _check_labels(generator, labels)


def _start_point(generator: Generator, x0: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """x_t where the reverse process starts: the forward process at t, pure noise ε at t = T."""
    return eps if t == generator.num_train_timesteps else add_noise(generator, x0, t, eps)


def reconstruct(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, t: int,
                sampler: SamplerConfig | None = None, seed: int = 0, batch_size: int = 256,
                noise: torch.Tensor | None = None, on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """Noise ``x0`` (N, C, H, W) to exactly step ``t`` and run the reverse process back to 0.

    ``t = 0`` returns ``x0`` unchanged; ``t = T`` ignores ``x0`` (ᾱ_T ≈ 4e-5) and is plain generation
    from pure noise. The same ``seed`` (or the same ``noise``) gives the same output.
    """
    sampler = sampler or SamplerConfig()
    _check_start(generator, labels, t)
    if t == 0:
        return x0.clone()
    rng = torch.Generator().manual_seed(seed)
    if noise is None:
        noise = torch.randn(x0.shape, generator=rng)
    device = generator.device
    out = torch.empty_like(x0)
    n_batches = (x0.shape[0] + batch_size - 1) // batch_size
    for i, sl in enumerate(_batches(x0.shape[0], batch_size)):
        x_t = _start_point(generator, x0[sl].to(device), t, noise[sl].to(device))
        batch_labels = labels[sl].to(device) if labels is not None else None
        out[sl] = reverse_process(generator, x_t, batch_labels, t, sampler, rng).images.to(out.device)
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
    _check_start(generator, labels, t)
    if t == 0:
        return ReconstructionView(x0.clone(), x0.clone(), [0], None)
    rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=rng)
    device = generator.device
    x_t = _start_point(generator, x0.to(device), t, noise.to(device))
    result = reverse_process(generator, x_t, labels.to(device) if labels is not None else None, t, sampler, rng,
                             record_trajectory=True)
    return ReconstructionView(x_t.cpu().clamp(-1, 1), result.images.cpu(), result.steps, result.x0_trajectory)


def reconstruct_many(generator: Generator, x0: torch.Tensor, labels: torch.Tensor | None, t_values: list[int],
                     sampler: SamplerConfig | None = None, seed: int = 0,
                     on_progress: ProgressCallback | None = None) -> torch.Tensor:
    """Reconstructions of the same images from each t with one shared noise draw: (len(t), N, C, H, W)."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    out = []
    for i, t in enumerate(t_values):
        out.append(reconstruct(generator, x0, labels, t, sampler, seed, noise=noise).cpu())
        if on_progress is not None:
            on_progress(i + 1, len(t_values))
    return torch.stack(out)


def sample_images(generator: Generator, labels: torch.Tensor | None, n: int | None = None,
                  sampler: SamplerConfig | None = None, seed: int = 0, batch_size: int = 256,
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

"""Semantic perturbations of DDIM-inverted latents (docs/algorithms.md §6).

*Semantic Perturbations with Normalizing Flows for Improved Generalization* (Yüksel et al., ICCV 2021): perturb
the exact latent ``z`` of an invertible model and decode ``x̃ = decode(z + Δz)``, clamped to the data range.

- ``rand``: ``Δz ~ N(0, ε² I)`` projected into the ball of radius ε (ℓ2: rescaled onto it when outside; ℓ∞: clamped).
- ``away``: ``Δz = sign(z) ⊙ |N(0, ε² I)|``, pushed away from the latent origin, projected the same way (ours).
- ``adv``: K steps of PGD maximising ``CE(ŷ, f(decode(z + Δz)))``, ``ŷ`` the classifier's own prediction on the clean
  image; ℓ∞ steps ``α sign(∇)``, ℓ2 steps ``α ∇/‖∇‖``, each followed by the projection; Δz starts at 0 (ours).

Radii are per image, over all of ``z``'s C·H·W entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genreg_core.diffusion.inversion import decode, invert
from genreg_core.diffusion.model import Generator
from genreg_core.features.extractor import ConvNet

PerturbationKind = Literal["rand", "away", "adv"]
PerturbationNorm = Literal["l2", "linf"]
KINDS: tuple[str, ...] = ("rand", "away", "adv")
NORMS: tuple[str, ...] = ("l2", "linf")
DEFAULT_EPS = {"rand": 0.2, "away": 0.15, "adv": 0.05}  # the paper's defaults (docs/algorithms.md §6)


def check_perturbation(kind: str, norm: str, eps: float) -> None:
    """``ValueError`` for an unknown kind or norm, or a negative radius."""
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {kind!r} (known: {', '.join(KINDS)})")
    if norm not in NORMS:
        raise ValueError(f"unknown perturbation norm {norm!r} (known: {', '.join(NORMS)})")
    if not eps >= 0:
        raise ValueError(f"perturbation radius eps must be non-negative, got {eps}")


def project(delta: torch.Tensor, eps: float, norm: PerturbationNorm) -> torch.Tensor:
    """Each ``delta[i]`` (N, ...) into the ball ``‖·‖ ≤ ε``: ℓ2 rescales the ones outside onto the sphere, ℓ∞ clamps."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).clamp(min=1e-12)  # (N,)
    scale = (eps / norms).clamp(max=1.0)
    return delta * scale.view(-1, *([1] * (delta.dim() - 1)))


def random_delta(z: torch.Tensor, eps: float, norm: PerturbationNorm, rng: torch.Generator) -> torch.Tensor:
    """``rand``: ``N(0, ε² I)`` projected into the ε-ball, same shape as ``z``."""
    return project(eps * torch.randn(z.shape, generator=rng).to(z.device), eps, norm)


def away_delta(z: torch.Tensor, eps: float, norm: PerturbationNorm, rng: torch.Generator) -> torch.Tensor:
    """``away``: ``sign(z) ⊙ |N(0, ε² I)|`` projected into the ε-ball."""
    return project(torch.sign(z) * (eps * torch.randn(z.shape, generator=rng).to(z.device)).abs(), eps, norm)


def pgd_delta(z: torch.Tensor, target: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
              classify: Callable[[torch.Tensor], torch.Tensor], eps: float, alpha: float, steps: int,
              norm: PerturbationNorm) -> torch.Tensor:
    """``adv``: ``steps`` PGD steps on ``CE(target, classify(decode(z + Δz)))`` in the ε-ball around ``z`` (N, ...).

    ``decode`` maps latents to images (differentiable), ``classify`` images to logits (N, K). Returns Δz detached.
    """
    if steps < 1 or not alpha > 0:
        raise ValueError(f"PGD needs at least 1 step and a positive step size, got {steps} and {alpha}")
    delta = torch.zeros_like(z)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(classify(decode(z + delta)), target)
        (grad,) = torch.autograd.grad(loss, [delta])
        if norm == "linf":
            step = alpha * grad.sign()
        else:
            step = alpha * grad / grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (z.dim() - 1)))
        delta = project(delta.detach() + step, eps, norm)
    return delta.detach()


def perturb_latents(kind: PerturbationKind, z: torch.Tensor, eps: float, norm: PerturbationNorm,
                    rng: torch.Generator, target: torch.Tensor | None = None,
                    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    alpha: float | None = None, steps: int = 1) -> torch.Tensor:
    """``z + Δz`` for one of the three kinds; ``adv`` needs ``target``, ``decode``, ``classify`` (α defaults to ε)."""
    check_perturbation(kind, norm, eps)
    if kind == "rand":
        return z + random_delta(z, eps, norm, rng)
    if kind == "away":
        return z + away_delta(z, eps, norm, rng)
    if target is None or decode is None or classify is None:
        raise ValueError("the adv perturbation needs the classifier's predictions, a decoder and a classifier")
    if eps == 0:
        return z.clone()
    return z + pgd_delta(z, target, decode, classify, eps, eps if alpha is None else alpha, steps, norm)


@dataclass
class PerturbationView:
    """What a page shows for a few images: perturbed decodings for growing ε and the classifier's response."""

    eps_values: list[float]  # (E,) radii, increasing
    round_trip: torch.Tensor  # (N, C, H, W) decode(invert(x_0)): the ε = 0 reference
    decodings: torch.Tensor  # (E, N, C, H, W) clamp(decode(z + Δz)) per radius
    probabilities: np.ndarray  # (E + 1, N, K) classifier softmax on the round trip (row 0) and on each decoding
    target: np.ndarray  # (N,) ŷ, the classifier's prediction on the original images (adv attacks it)
    latent_rms: np.ndarray  # (E,) RMS of Δz per radius, over images and entries


def perturbation_view(generator: Generator, classifier: ConvNet, x0: torch.Tensor, labels: torch.Tensor | None,
                      kind: PerturbationKind, norm: PerturbationNorm, eps_values: list[float], tau: int,
                      n_steps: int = 10, pgd_steps: int = 1, seed: int = 0) -> PerturbationView:
    """Invert ``x0`` (N, C, H, W) to depth τ once, perturb its latents with each ε (one seed for every ε) and decode.

    ``classifier`` (eval mode) labels the results; for ``adv`` the PGD (α = ε / K) attacks its prediction ``ŷ``.
    """
    for eps in eps_values:
        check_perturbation(kind, norm, eps)
    device = generator.device
    was_training = classifier.training
    classifier.eval()
    z = invert(generator, x0, labels, tau, n_steps).to(device)
    y = labels.to(device) if labels is not None else None

    def dec(latent: torch.Tensor) -> torch.Tensor:
        return decode(generator, latent, y, tau, n_steps)

    with torch.no_grad():
        target = classifier(x0.to(device)).argmax(1)
        round_trip = dec(z)
    decodings, shifts = [], []
    for eps in sorted(eps_values):
        rng = torch.Generator().manual_seed(seed)
        z_pert = perturb_latents(kind, z, eps, norm, rng, target, dec, classifier, eps / pgd_steps, pgd_steps)
        with torch.no_grad():
            decodings.append(dec(z_pert))
        shifts.append(float((z_pert - z).pow(2).mean().sqrt()))
    stacked = torch.stack(decodings) if decodings else torch.zeros(0, *x0.shape)  # (E, N, C, H, W)
    with torch.no_grad():
        probs = torch.stack([classifier(images).softmax(1) for images in [round_trip, *stacked]])  # (E + 1, N, K)
    classifier.train(was_training)
    return PerturbationView(sorted(eps_values), round_trip.cpu(), stacked.cpu(), probs.cpu().numpy(),
                            target.cpu().numpy(), np.array(shifts))

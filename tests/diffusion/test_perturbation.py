"""Latent perturbations: exact radii in ℓ2 and ℓ∞, away pushes outwards, PGD raises the classifier's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genreg_core.config import FeatureConfig
from genreg_core.diffusion.inversion import decode, invert
from genreg_core.diffusion.perturbation import perturb_latents, perturbation_view, project
from genreg_core.features.extractor import build_convnet
from tests.diffusion.ddim_reference import decode_by_hand, invert_by_hand


def _z(n=6):
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("kind", ["rand", "away"])
def test_random_kinds_have_exact_radii(kind):
    z = _z()
    rng = torch.Generator().manual_seed(0)
    delta_l2 = perturb_latents(kind, z, 0.2, "l2", rng) - z
    # N(0, 0.04 I) over 256 entries has norm ≈ 3.2 > 0.2: every image lands on the sphere
    torch.testing.assert_close(delta_l2.flatten(1).norm(dim=1), torch.full((6,), 0.2))
    delta_inf = perturb_latents(kind, z, 0.15, "linf", rng) - z
    per_image_max = delta_inf.flatten(1).abs().max(dim=1).values
    torch.testing.assert_close(per_image_max, torch.full((6,), 0.15))  # clamped: some entry sits on the bound
    if kind == "away":
        assert ((delta_inf * z) >= 0).all() and ((delta_l2 * z) >= 0).all()  # moved away from the origin


def test_project_leaves_the_inside_of_the_ball_alone():
    small = torch.full((2, 1, 2, 2), 0.01)
    torch.testing.assert_close(project(small, 1.0, "l2"), small)
    torch.testing.assert_close(project(small, 1.0, "linf"), small)
    big = torch.ones(1, 1, 2, 2) * 3
    torch.testing.assert_close(project(big, 1.0, "l2"), torch.full((1, 1, 2, 2), 0.5))  # ‖(3,3,3,3)‖ = 6 → 1


def test_bad_perturbation_arguments_raise():
    z = _z(1)
    rng = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="unknown perturbation 'big'"):
        perturb_latents("big", z, 0.1, "l2", rng)
    with pytest.raises(ValueError, match="unknown perturbation norm 'l1'"):
        perturb_latents("rand", z, 0.1, "l1", rng)
    with pytest.raises(ValueError, match="non-negative"):
        perturb_latents("rand", z, -1.0, "l2", rng)
    with pytest.raises(ValueError, match="adv perturbation needs"):
        perturb_latents("adv", z, 0.1, "l2", rng)


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 1.0)])
def test_pgd_raises_the_classifier_loss_within_the_radius(norm, eps, digits, tiny_generator):
    torch.manual_seed(0)
    model = build_convnet(FeatureConfig(width=8, feature_dim=32), 1, 10).eval()
    x0, labels = digits.images[:8], digits.labels[:8]
    tau, steps = 300, 2
    z = invert(tiny_generator, x0, labels, tau, steps)

    def dec(latent):
        return decode(tiny_generator, latent, labels, tau, steps)

    with torch.no_grad():
        target = model(x0).argmax(1)
        clean_loss = F.cross_entropy(model(dec(z)), target).item()
    z_adv = perturb_latents("adv", z, eps, norm, torch.Generator(), target, dec, model, alpha=eps / 2, steps=3)
    delta = (z_adv - z).flatten(1)
    radius = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert (radius <= eps + 1e-5).all() and radius.max() > 0.99 * eps
    with torch.no_grad():
        adv_loss = F.cross_entropy(model(dec(z_adv)), target).item()
        rand_loss = F.cross_entropy(model(dec(perturb_latents("rand", z, eps, norm, torch.Generator().manual_seed(0)))),
                                    target).item()
    assert adv_loss > clean_loss
    assert adv_loss - clean_loss > abs(rand_loss - clean_loss)  # the attack beats a random draw of the same radius


def test_perturbation_view_grows_with_eps_and_adv_lowers_the_predicted_class(digits, tiny_generator):
    torch.manual_seed(0)
    model = build_convnet(FeatureConfig(width=8, feature_dim=32), 1, 10).eval()
    x0, labels = digits.images[:4], digits.labels[:4]
    view = perturbation_view(tiny_generator, model, x0, labels, "adv", "linf", [0.1, 0.02], 200, 2)
    assert view.eps_values == [0.02, 0.1] and view.decodings.shape == (2, 4, 1, 16, 16)
    assert view.probabilities.shape == (3, 4, 10) and view.target.shape == (4,)
    by_hand = decode_by_hand(tiny_generator, invert_by_hand(tiny_generator, x0, labels, [0, 100, 200]), labels,
                             [200, 100, 0])  # the round trip at τ = 200 in 2 steps, written out in the reference
    torch.testing.assert_close(view.round_trip, by_hand, rtol=1e-5, atol=1e-5)
    assert view.latent_rms[0] < view.latent_rms[1] <= 0.1 + 1e-6
    p_target = view.probabilities[:, np.arange(4), view.target].mean(1)  # (E + 1,) mean p(ŷ)
    assert p_target[2] < p_target[0]
    assert model.training is False

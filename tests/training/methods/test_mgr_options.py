"""MGR checked against independent computations: PCR by hand from views checked against a numpy T, the
meta-gradient by finite differences, the DDIM chain against diffusers' DDIMScheduler, the Adam lookahead against
torch.optim.Adam; synthetic data never reaches the CE loss or the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genreg_core.config import FeatureConfig, GeneratorTrainConfig, MGROptions, get_preset
from genreg_core.diffusion.model import Generator, build_scheduler, build_unet
from genreg_core.features.extractor import build_convnet
from genreg_core.training.methods import MethodSetup
from genreg_core.training.methods.ce import CrossEntropy
from genreg_core.training.methods.mgr import MGR, ddim_chain, pcr_per_sample
from genreg_core.training.methods.mgr_options import ConditionalFinder, adam_lookahead
from tests.features.augment_reference import fit_shift_rotate

N_CLASSES = 10


def _tiny_model(dtype=torch.float32):
    torch.manual_seed(0)
    return build_convnet(FeatureConfig(width=8, feature_dim=32), 1, N_CLASSES).to(dtype).train()


def _setup(digits, generator, model, optimizer=None, dtype=torch.float32) -> MethodSetup:
    train = torch.cat([torch.nonzero(digits.labels == c).flatten()[:3] for c in range(N_CLASSES)])
    meta = torch.cat([torch.nonzero(digits.labels == c).flatten()[3:5] for c in range(N_CLASSES)])
    return MethodSetup(model, digits.images[train].to(dtype), digits.labels[train], N_CLASSES, torch.device("cpu"),
                       torch.Generator().manual_seed(0), generator, digits.images[meta].to(dtype),
                       digits.labels[meta], optimizer=optimizer)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pcr_is_the_squared_feature_distance_of_two_views_of_each_image(reduction, digits):
    """No replay of the code's random draws: the views the network saw are checked to be two different T of the
    right image (a numpy fit of shift and rotation), and the loss is recomputed from them by hand."""
    torch.manual_seed(1)
    weight = torch.randn(256, 5)  # a linear "feature extractor" g(x) = flatten(x) W, d = 5
    x_p = digits.images[:3]  # three different digits, (3, 1, 16, 16)
    seen = []

    def forward(x):
        seen.append(x.detach().clone())
        return x.flatten(1) @ weight, None

    pcr = pcr_per_sample(forward, x_p, torch.Generator().manual_seed(7), reduction)
    (views,) = seen  # both views of every image in one forward pass, (6, 1, 16, 16)
    assert views.shape == (6, 1, 16, 16) and pcr.shape == (3,)
    images, w = x_p.numpy()[:, 0], weight.numpy().astype(np.float64)
    for i in range(3):
        first, second = views[i, 0].numpy(), views[3 + i, 0].numpy()
        for view in (first, second):  # a shift ≤ 2 px and a rotation ≤ 10° of its own image, not of another one
            error, _, _, degrees = fit_shift_rotate(view, images[i])
            assert error < 0.01 and abs(degrees) <= 10.05
            assert fit_shift_rotate(view, images[(i + 1) % 3])[0] > 0.5
            assert np.abs(view - images[i]).max() > 0.1  # moved: neither view is the image itself (this seed)
        assert np.abs(first - second).max() > 0.1  # two independent draws of T, not one view twice
        f1, f2 = first.reshape(-1) @ w, second.reshape(-1) @ w  # (5,) each
        by_hand = sum((a - b) ** 2 for a, b in zip(f1.tolist(), f2.tolist()))
        assert pcr[i].item() == pytest.approx(by_hand if reduction == "sum" else by_hand / 5, rel=1e-4)
    blank = torch.full((2, 1, 16, 16), -1.0)  # T keeps a blank image blank: its two views agree (up to rounding)
    assert pcr_per_sample(forward, blank, torch.Generator().manual_seed(7), reduction).abs().max().item() < 1e-8


def test_synthetic_images_never_reach_the_ce_loss_or_the_head(digits, tiny_generator):
    model = _tiny_model()
    setup = _setup(digits, tiny_generator, model)
    method = MGR(CrossEntropy(), MGROptions(weight=5.0, sampler_steps=2, synthetic_batch=4))
    method.start(setup)
    x, y = setup.images[:8], setup.labels[:8]
    loss, metrics = method.step_loss(model, x, y, lr=1e-2)
    assert metrics["pcr_loss"] > 0
    head_grads = torch.autograd.grad(loss, list(model.head.parameters()), retain_graph=True)
    ce_alone = F.cross_entropy(model(x), y)  # the CE of the real batch, computed independently
    assert metrics["ce_loss"] == pytest.approx(ce_alone.item(), rel=1e-6)
    for g, g_ce in zip(head_grads, torch.autograd.grad(ce_alone, list(model.head.parameters()))):
        torch.testing.assert_close(g, g_ce)  # the head learns from the real batch only
    # while the backbone does learn from the synthetic batch: its gradient is not CE's alone (this can fail)
    backbone = list(model.backbone.parameters())
    step_grads = torch.autograd.grad(loss, backbone, retain_graph=True)
    ce_grads = torch.autograd.grad(F.cross_entropy(model(x), y), backbone)
    assert max((a - b).abs().max().item() for a, b in zip(step_grads, ce_grads)) > 1e-6


@pytest.mark.parametrize("lookahead_kind", ["sgd", "adam"])
def test_finder_meta_gradient_matches_a_finite_difference(digits, lookahead_kind):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        unet = build_unet(get_preset("tiny").unet).eval().requires_grad_(False)
        generator = Generator(unet, build_scheduler(GeneratorTrainConfig()), [str(i) for i in range(10)], 10)
        model = _tiny_model(torch.float64)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=5e-4)
        setup = _setup(digits, generator, model, optimizer, torch.float64)
        F.cross_entropy(model(setup.images), setup.labels).backward()
        optimizer.step()  # non-zero Adam moments for the Adam lookahead
        method = MGR(CrossEntropy(), MGROptions(weight=20.0, finder_lr=0.0, sampler_steps=2, synthetic_batch=4,
                                                lookahead=lookahead_kind, compare_random=False,
                                                finder_conditional=True))
        method.start(setup)
        params = list(method.finder_.parameters())
        with torch.no_grad():  # move off the identity so every finder weight has a gradient
            for p in params:
                p.add_(0.1 * torch.randn_like(p))
        x, y, rng = setup.images[:8], setup.labels[:8], setup.rng
        state = rng.get_state()
        method.meta_step(model, x, y, lr=0.5)
        direction = [torch.randn_like(p) for p in params]
        analytic = sum((p.grad * d).sum() for p, d in zip(params, direction)).item()

        def val_after(h: float) -> float:
            with torch.no_grad():
                for p, d in zip(params, direction):
                    p.add_(h * d)
            rng.set_state(state)
            value = method.meta_step(model, x, y, lr=0.5)["mgr_val_loss_after"]
            with torch.no_grad():
                for p, d in zip(params, direction):
                    p.sub_(h * d)
            return value

        h = 1e-8  # the DDIM chain clamps x̂₀ at ±1: the loss is smooth only between kinks, so h stays tiny
        numeric = (val_after(h) - val_after(-h)) / (2 * h)
        assert abs(analytic) > 1e-8
        assert numeric == pytest.approx(analytic, rel=1e-4, abs=1e-9)
    finally:
        torch.set_default_dtype(default)


def test_ddim_chain_matches_diffusers_ddim_scheduler(tiny_generator):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing",
                              prediction_type="epsilon")
    scheduler.set_timesteps(5)
    torch.manual_seed(3)
    x_T = torch.randn(4, 1, 16, 16)
    labels = torch.tensor([0, 3, 5, 9])
    x = x_T
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = tiny_generator.unet(x, t, class_labels=labels).sample
            # our chain re-derives ε from the clipped x̂₀, which diffusers does with use_clipped_model_output
            x = scheduler.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        ours = ddim_chain(tiny_generator, x_T, labels, 5)
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-4)


def test_adam_lookahead_is_the_step_torch_adam_takes():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-2)
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    for _ in range(3):  # build up moments
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    params = dict(model.named_parameters())
    predicted = {k: v.detach().clone() for k, v in adam_lookahead(params, F.cross_entropy(model(x), y), 0.05,
                                                                   optimizer).items()}
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(predicted[name], p.detach())


def test_conditional_finder_starts_as_identity_and_depends_on_the_class():
    finder = ConditionalFinder(1, N_CLASSES)
    u = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(finder(u, torch.tensor([0, 1])), u)
    torch.nn.init.normal_(finder.residual[-1].weight)
    same_u = u[:1].expand(2, -1, -1, -1)
    out = finder(same_u, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])


def test_mgr_records_the_comparison_with_random_latents(digits, tiny_generator):
    model = _tiny_model()
    method = MGR(CrossEntropy(), MGROptions(sampler_steps=2, synthetic_batch=4, meta_steps=2))
    method.start(_setup(digits, tiny_generator, model))
    metrics = method.meta_step(model, method.setup_.images[:8], method.setup_.labels[:8], lr=1e-2)
    # the finder starts as the identity: the selected samples are the random ones, so the two lookaheads agree
    assert metrics["mgr_val_loss_after_random"] == pytest.approx(metrics["mgr_val_loss_after"], rel=1e-5)
    assert metrics["mgr_beats_random"] == 0.0
    method.step_loss(model, method.setup_.images[:8], method.setup_.labels[:8], lr=1e-2)
    snapshot = method.epoch_snapshot()
    assert snapshot["val_loss_after_random"].shape == (3,) == snapshot["finder_shift"].shape  # 1 + 2 meta steps


def test_mgr_rejects_unknown_options():
    with pytest.raises(ValueError, match="PCR reduction"):
        MGR(CrossEntropy(), MGROptions(pcr_reduction="max"))
    with pytest.raises(ValueError, match="lookahead"):
        MGR(CrossEntropy(), MGROptions(lookahead="rmsprop"))


def _influence_case(step_kind: str):
    """A lookahead on a tiny ConvNet whose Adam has moments from two real steps; a per-sample CE as ℓ_i."""
    from genreg_core.training.methods.base import functional_forward
    from genreg_core.training.methods.lookahead import alignment_influence, lookahead, lookahead_validation

    model = _tiny_model()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 16, 16, generator=gen), torch.randint(N_CLASSES, (8,), generator=gen)
    x_s, y_s = torch.randn(5, 1, 16, 16, generator=gen), torch.randint(N_CLASSES, (5,), generator=gen)
    x_v, y_v = torch.randn(6, 1, 16, 16, generator=gen), torch.randint(N_CLASSES, (6,), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def real(forward):
        return F.cross_entropy(forward(x)[1], y)

    def per_sample(forward):
        return F.cross_entropy(forward(x_s)[1], y_s, reduction="none")  # (S,)

    def step(p, loss, lr):
        return adam_lookahead(p, loss, lr, optimizer) if step_kind == "adam" else lookahead(p, loss, lr)

    lam, lr = 0.7, 0.05
    result = lookahead_validation(model, real, per_sample, lam, lr, x_v, y_v, 6, gen, step=step)
    influence = alignment_influence(result)
    (weight_grad,) = torch.autograd.grad(result.val_after, [result.weights], retain_graph=True)
    # the reference, sample by sample: h = ∇_θ' CE(B_val; θ') and ∇_θ ℓ_i(θ) from a fresh forward at θ
    params = result.params
    val = F.cross_entropy(functional_forward(model, result.params_after)(x_v)[1], y_v)
    h = torch.autograd.grad(val, [result.params_after[k] for k in params], retain_graph=True, allow_unused=True)
    losses = per_sample(functional_forward(model, params))
    reference = []
    for i in range(5):
        g = torch.autograd.grad(losses[i], list(params.values()), retain_graph=True, allow_unused=True)
        reference.append(-lam * sum((a * b).sum() for a, b in zip(h, g) if a is not None and b is not None))
    return influence, torch.stack(reference).detach(), weight_grad * 5 / lr


def test_influence_is_the_alignment_under_the_adam_lookahead():
    """−λ ∇CE(B_val; θ')·∇ℓ_i(θ) computed sample by sample; the S/η rescale of ∂L_val/∂w_i is not it under Adam."""
    influence, reference, rescaled = _influence_case("adam")
    torch.testing.assert_close(influence, reference, rtol=1e-3, atol=1e-6)
    assert not torch.allclose(rescaled, reference, rtol=0.1, atol=1e-4)  # the old record, wrong under Adam


def test_influence_under_sgd_equals_the_rescaled_weight_gradient():
    influence, reference, rescaled = _influence_case("sgd")
    torch.testing.assert_close(influence, reference, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(rescaled, reference, rtol=1e-3, atol=1e-6)

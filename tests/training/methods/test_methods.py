"""Methods one by one: the lookahead, the differentiable DDIM chain, AdaRand's prior, MGR's finder, every loss."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from genreg_core.config import FeatureConfig, SamplerConfig, TrainConfig
from genreg_core.diffusion.sampling import reverse_process
from genreg_core.features.extractor import build_convnet
from genreg_core.training.methods import METHODS, MethodSetup, make_method
from genreg_core.training.methods.adarand import AdaRand, prior_loss
from genreg_core.training.methods.lookahead import ddim_chain, lookahead

N_CLASSES = 10


def _setup(digits, generator, config: TrainConfig) -> MethodSetup:
    """A tiny model with 3 images per class for training and 1 per class as B_val."""
    torch.manual_seed(0)
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), 1, N_CLASSES).train()
    train = torch.cat([torch.nonzero(digits.labels == c).flatten()[:3] for c in range(N_CLASSES)])
    meta = torch.cat([torch.nonzero(digits.labels == c).flatten()[3:4] for c in range(N_CLASSES)])
    return MethodSetup(model, digits.images[train], digits.labels[train], N_CLASSES, torch.device("cpu"),
                       torch.Generator().manual_seed(0), generator, digits.images[meta], digits.labels[meta])


def test_lookahead_equals_hand_written_sgd_step():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(10, 4), torch.randint(3, (10,))
    params = dict(net.named_parameters())
    after = lookahead(params, F.cross_entropy(functional_call(net, params, (x,)), y), lr=0.1)

    by_hand = copy.deepcopy(net)
    F.cross_entropy(by_hand(x), y).backward()
    with torch.no_grad():
        for p in by_hand.parameters():
            p -= 0.1 * p.grad
    for name, p in by_hand.named_parameters():
        torch.testing.assert_close(after[name], p)
    assert all(net_p.grad is None for net_p in net.parameters())  # the module itself is untouched
    assert after["0.weight"].grad_fn is not None  # graph kept for second-order gradients


def test_lookahead_weight_gradient_is_the_alignment_proxy():
    """∂L_val(θ')/∂w_i = −(η/N) ∇L_val(θ')·∇ℓ_i(θ): the influence MGR records, up to the factor η/N."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y, x_val, y_val = torch.randn(5, 4), torch.randint(3, (5,)), torch.randn(6, 4), torch.randint(3, (6,))
    params = dict(net.named_parameters())
    w = torch.ones(5, requires_grad=True)
    per_sample = F.cross_entropy(functional_call(net, params, (x,)), y, reduction="none")
    after = lookahead(params, (w * per_sample).mean(), lr=0.5)
    val = F.cross_entropy(functional_call(net, after, (x_val,)), y_val)
    (w_grad,) = torch.autograd.grad(val, [w], retain_graph=True)
    val_grad = torch.autograd.grad(val, list(after.values()))
    for i in range(5):
        sample_grad = torch.autograd.grad(per_sample[i], list(params.values()), retain_graph=True)
        dot = sum((a * b).sum() for a, b in zip(val_grad, sample_grad))
        torch.testing.assert_close(w_grad[i], -0.5 / 5 * dot, rtol=1e-4, atol=1e-7)


def test_ddim_chain_matches_reverse_process_and_passes_gradients(tiny_generator):
    torch.manual_seed(0)
    x_T, labels = torch.randn(3, 1, 16, 16), torch.tensor([0, 4, 9])
    reference = reverse_process(tiny_generator, x_T, labels, tiny_generator.num_train_timesteps,
                                SamplerConfig(n_steps=3)).images
    with torch.no_grad():
        torch.testing.assert_close(ddim_chain(tiny_generator, x_T, labels, 3), reference, atol=1e-4, rtol=1e-4)
    for backprop_steps in (None, 1):
        x = x_T.clone().requires_grad_(True)
        out = ddim_chain(tiny_generator, x, labels, 3, backprop_steps)
        torch.testing.assert_close(out.detach(), reference, atol=1e-4, rtol=1e-4)
        out.pow(2).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_adarand_prior_step_follows_means_and_spreads(digits, tiny_generator):
    # the initial μ, σ are checked against an independent computation in test_adarand.py
    config = TrainConfig.tiny("adarand")
    setup = _setup(digits, tiny_generator, config)
    method: AdaRand = make_method("adarand", config)
    method.start(setup)
    torch.manual_seed(1)
    method.mu_bar_ = torch.randn_like(method.mu_bar_)  # running means pointing elsewhere
    follow_0, spread_0 = prior_loss(method.mu_.detach(), method.mu_bar_)
    for _ in range(30):
        method.update_prior()
    follow_1, spread_1 = prior_loss(method.mu_.detach(), method.mu_bar_)
    assert follow_1 < follow_0 and spread_1 < spread_0


def test_adarand_running_means_move_only_present_classes(digits, tiny_generator):
    config = TrainConfig.tiny("adarand")
    method: AdaRand = make_method("adarand", config)
    method.start(_setup(digits, tiny_generator, config))
    before = method.mu_bar_.clone()
    features = torch.randn(4, config.feature_dim)
    labels = torch.tensor([2, 2, 5, 5])
    method.update_running_means(features, labels)
    expected = before.clone()
    expected[2] = 0.5 * before[2] + 0.5 * features[:2].mean(0)
    expected[5] = 0.5 * before[5] + 0.5 * features[2:].mean(0)
    torch.testing.assert_close(method.mu_bar_, expected)


def test_mgr_finder_gets_validation_gradient_and_moves(digits, tiny_generator):
    config = TrainConfig.tiny("mgr")
    setup = _setup(digits, tiny_generator, config)
    method = make_method("mgr", config)
    method.start(setup)
    start = [p.detach().clone() for p in method.finder_.parameters()]
    norms = [method.meta_step(setup.model, setup.images[:8], setup.labels[:8], lr=1e-2)["finder_grad_norm"]
             for _ in range(3)]
    assert all(n > 0 for n in norms)
    moved = max((p.detach() - p0).abs().max().item() for p, p0 in zip(method.finder_.parameters(), start))
    assert moved > 1e-4
    assert all(p.grad is None for p in setup.model.parameters())  # meta steps never touch the classifier's grads
    snapshot = method.epoch_snapshot()
    assert snapshot["val_loss_before"].shape == (3,) and snapshot["influence"].shape == (config.mgr.synthetic_batch,)
    assert torch.isfinite(snapshot["influence"]).all()


def test_mgr_leaves_batchnorm_running_stats_to_real_images(digits, tiny_generator):
    config = TrainConfig.tiny("mgr")
    setup = _setup(digits, tiny_generator, config)
    method = make_method("mgr", config)
    method.start(setup)
    x, y = setup.images[:8], setup.labels[:8]
    reference = copy.deepcopy(setup.model)
    reference.features(x)  # one real forward in train mode
    method.step_loss(setup.model, x, y, lr=1e-2)
    for (name, a), b in zip(setup.model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_lowers_its_loss_on_a_fixed_batch(name, digits, tiny_generator):
    config = TrainConfig.tiny(name)
    setup = _setup(digits, tiny_generator, config)
    method = make_method(name, config)
    method.start(setup)
    optimizer = torch.optim.Adam(setup.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss, metrics = method.step_loss(setup.model, setup.images, setup.labels, lr=3e-3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        metrics.update(method.after_step())
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
        losses.append(loss.item())
    assert sum(losses[-3:]) < sum(losses[:3])


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make_method("nope", TrainConfig())

"""The latent-space methods: semantic perturbations (DDIM-inverted latents) and GSSL (meta-optimized latents)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from genreg_core.analysis.meta_latents import REQUIRED
from genreg_core.cli.main import main
from genreg_core.config import FeatureConfig, GSSLOptions, SemanticOptions, TrainConfig
from genreg_core.features.extractor import build_convnet
from genreg_core.runs.store import RunStore
from genreg_core.training.methods import GSSL, MethodSetup, SemanticPerturbation, make_method
from tests.diffusion.ddim_reference import invert_by_hand

N_CLASSES = 10


def _setup(digits, generator) -> MethodSetup:
    """A tiny model with 3 images per class for training and 1 per class as B_val."""
    torch.manual_seed(0)
    model = build_convnet(FeatureConfig(width=8, feature_dim=32), 1, N_CLASSES).train()
    train = torch.cat([torch.nonzero(digits.labels == c).flatten()[:3] for c in range(N_CLASSES)])
    meta = torch.cat([torch.nonzero(digits.labels == c).flatten()[3:4] for c in range(N_CLASSES)])
    return MethodSetup(model, digits.images[train], digits.labels[train], N_CLASSES, torch.device("cpu"),
                       torch.Generator().manual_seed(0), generator, digits.images[meta], digits.labels[meta])


def test_semantic_inverts_the_training_images_once_and_decodes_into_the_data_range(digits, tiny_generator):
    setup = _setup(digits, tiny_generator)
    method = SemanticPerturbation(SemanticOptions("away", "linf", 0.3, tau=200, sampler_steps=2))
    method.start(setup)
    reference = invert_by_hand(tiny_generator, setup.images, setup.labels, [0, 100, 200])  # τ = 200 in 2 steps
    torch.testing.assert_close(method.latents_, reference, rtol=1e-5, atol=1e-5)
    x0, x_pert, y = method.perturbed_batch(setup.model, 8)
    assert x_pert.shape == x0.shape == (8, 1, 16, 16) and y.shape == (8,)
    assert x_pert.min() >= -1 and x_pert.max() <= 1
    assert (x_pert - x0).abs().max() > 0


def test_semantic_ratio_zero_is_plain_cross_entropy_and_bad_arguments_raise(digits, tiny_generator):
    setup = _setup(digits, tiny_generator)
    method = SemanticPerturbation(SemanticOptions(ratio=0.0, tau=100, sampler_steps=2))
    method.start(setup)
    x, y = setup.images[:8], setup.labels[:8]
    loss, _ = method.step_loss(setup.model, x, y, lr=1e-2)
    torch.testing.assert_close(loss, F.cross_entropy(setup.model(x), y))
    with pytest.raises(ValueError, match="mix ratio"):
        SemanticPerturbation(SemanticOptions(ratio=1.5))
    with pytest.raises(ValueError, match="unknown perturbation 'big'"):
        make_method("semantic", TrainConfig(semantic=SemanticOptions(perturbation="big")))
    adv = TrainConfig(semantic=SemanticOptions(perturbation="adv"))
    assert make_method("semantic", adv).eps == 0.05  # paper default


@pytest.mark.parametrize("sim_weight", [0.0, 1.0])
def test_gssl_latent_step_lowers_the_meta_objective(sim_weight, digits, tiny_generator):
    """Same augmentations and validation batch before and after (the rng re-seeded): J(z') < J(z)."""
    setup = _setup(digits, tiny_generator)
    method = GSSL(GSSLOptions(sim_weight=sim_weight, latent_lr=0.02, bank_per_class=2, sampler_steps=2,
                             synthetic_batch=6))
    method.start(setup)
    x, y, pick = setup.images[::3], setup.labels[::3], torch.tensor([0, 3, 5, 8, 12, 19])
    before_bank = method.latents_.clone()

    def objective() -> float:
        setup.rng.manual_seed(7)
        with torch.enable_grad():
            return method.meta_objective(setup.model, x, y, 1e-2, pick, method.latents_[pick])[0].item()

    j0 = objective()
    setup.rng.manual_seed(7)
    metrics = method.meta_step(setup.model, x, y, 1e-2, pick)
    j1 = objective()
    assert j1 < j0
    assert metrics["gssl_latent_grad_norm"] > 0
    step = (method.latents_ - before_bank).flatten(1)
    moved = torch.zeros(step.shape[0], dtype=torch.bool)
    moved[pick] = True
    torch.testing.assert_close(step[moved].pow(2).mean(1).sqrt(), torch.full((6,), 0.02))  # RMS step β per latent
    assert (step[~moved] == 0).all()
    assert all(p.grad is None for p in setup.model.parameters())  # the latent step leaves the classifier alone


def test_gssl_snapshot_is_replayable_like_mgr(digits, tiny_generator):
    setup = _setup(digits, tiny_generator)
    config = TrainConfig.tiny("gssl")
    method = make_method("gssl", config)
    method.start(setup)
    for _ in range(2):
        method.step_loss(setup.model, setup.images[:8], setup.labels[:8], lr=1e-2)
    snapshot = method.epoch_snapshot()
    assert set(REQUIRED) <= set(snapshot)
    s = config.gssl.synthetic_batch
    assert snapshot["latents"].shape == (2, s, 1, 16, 16) and snapshot["sample_images"].shape == (s, 1, 16, 16)
    assert snapshot["val_loss_before"].shape == (2,) and torch.isfinite(snapshot["influence"]).all()
    assert (snapshot["sample_classes"] >= 0).all()


@pytest.mark.parametrize("method", ["semantic", "gssl"])
def test_cli_trains_the_latent_methods_with_the_json_contract(method, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    args = ["train", "--method", method, "--per-class", "3", "--epochs", "1", "--seed", "0", "--preset", "tiny",
            "--device", "cpu", "--json", "--perturbation", "away", "--norm", "l2", "--eps", "0.5"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(payload) == {"method", "per_class", "seed", "best_val_loss", "test_accuracy", "epochs", "run_id", "init",
                            "generator_regime", "skipped"}
    assert payload["method"] == method and payload["epochs"] == 1 and 0 <= payload["test_accuracy"] <= 1
    train = RunStore().load_spec(payload["run_id"]).train
    assert (train.semantic.perturbation, train.semantic.norm, train.semantic.eps) == ("away", "l2", 0.5)


def test_cli_train_rejects_a_bad_perturbation(capsys):
    assert main(["train", "--method", "semantic", "--eps", "-1", "--epochs", "1"]) == 2
    assert "--eps" in capsys.readouterr().err
    assert main(["train", "--method", "semantic", "--perturbation", "big", "--epochs", "1"]) == 2
    assert "--perturbation" in capsys.readouterr().err

"""Replays of AdaRand's reference vectors and MGR's meta-selected latents from real tiny runs."""

import dataclasses

import numpy as np
import pytest
import torch

from genreg_core.analysis.meta_latents import replay_meta_latents
from genreg_core.analysis.reference_vectors import replay_references
from genreg_core.config import SamplerConfig, TrainConfig
from genreg_core.diffusion.sampling import reconstruct
from genreg_core.training.loop import TrainCallbacks, train_classifier


@pytest.fixture(scope="module")
def lab():
    from genreg_core.lab import open_lab

    return open_lab(device="cpu")


def _snapshots(lab, method: str, epochs: int = 3) -> list[dict[str, torch.Tensor]]:
    snaps = []
    config = dataclasses.replace(TrainConfig.tiny(method), epochs=epochs)
    train_classifier(lab.dataset, lab.split, config, lab.generator, lab.device,
                     TrainCallbacks(on_snapshot=lambda epoch, tensors: snaps.append(tensors)))
    return snaps


def test_reference_replay_frames_and_stats(lab):
    replay = replay_references(_snapshots(lab, "adarand"))
    e, k = len(replay.epochs), 10
    assert e == 3 and replay.mu_xy.shape == (e, k, 2) and replay.mu_bar_xy.shape == (e, k, 2)
    assert replay.probe_xy.shape[0] == e and replay.probe_xy.shape[1] == len(replay.probe_labels)
    assert replay.reference_xy.shape == (e, len(replay.reference_labels), 2)
    assert not np.allclose(replay.mu_xy[0], replay.mu_xy[-1])  # the priors move
    for row in replay.stats:
        assert 0 <= row["nearest_mu_accuracy"] <= 1 and row["prior_spread"] >= 0 and row["mu_norm"] > 0
    with pytest.raises(ValueError, match="no AdaRand"):
        replay_references([{"latents": torch.zeros(1)}])


def test_meta_latent_replay_decodes_random_latents_with_the_same_chain(lab):
    snaps = _snapshots(lab, "mgr", epochs=2)
    steps = TrainConfig.tiny("mgr").mgr.sampler_steps
    replay = replay_meta_latents(lab, snaps, steps, k=2)
    e, s = replay.classes.shape
    assert e == 2 and replay.selected.shape == replay.random.shape == (e, s, 1, 16, 16)
    assert replay.selected_xy.shape == replay.random_xy.shape == (e, s, 2)
    assert set(replay.metrics) == {"selected", "random"} and 0 <= replay.metrics["random"]["precision"] <= 1
    # decoding F_ω(u) with the replay's chain gives back the images recorded in training
    latents, classes = snaps[-1]["latents"][1], snaps[-1]["sample_classes"]
    decoded = reconstruct(lab.generator, torch.zeros_like(latents), classes, 1000, SamplerConfig(n_steps=steps),
                          noise=latents)
    torch.testing.assert_close(decoded, snaps[-1]["sample_images"], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="no MGR latents"):
        replay_meta_latents(lab, [{"mu": torch.zeros(1)}], steps)

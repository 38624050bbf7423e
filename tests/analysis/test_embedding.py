"""Embeddings for the metrics (classifier, SSL backbone, fixed random network) and disjoint reference sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genreg_core.analysis.embedding import embed, embedding_network, random_network
from genreg_core.analysis.feature_space import FeatureSpaceConfig, compute_feature_space
from genreg_core.analysis.reverse_step import SweepConfig, run_sweep
from genreg_core.config import SamplerConfig
from genreg_core.lab import reference_subset

FAST = SamplerConfig(n_steps=2)


@pytest.fixture(scope="module")
def lab():
    from genreg_core.lab import open_lab

    return open_lab()


def test_random_network_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b, other = random_network(1), random_network(1), random_network(1, seed=1)
    assert torch.equal(torch.rand(3), expected_next)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.backbone[0][0].weight, other.backbone[0][0].weight)


def test_embeddings_differ_and_are_deterministic(lab):
    images = lab.dataset.images[lab.split.test[:40]]
    feats = {name: embed(lab, images, name) for name in ("classifier", "ssl", "random")}
    assert all(f.shape == (40, 128) and np.isfinite(f).all() for f in feats.values())
    assert not np.allclose(feats["ssl"], feats["random"]) and not np.allclose(feats["ssl"], feats["classifier"])
    np.testing.assert_array_equal(embed(lab, images, "random"), feats["random"])
    assert embedding_network(lab, "ssl") is embedding_network(lab, "ssl")  # built once per lab
    with pytest.raises(ValueError, match="unknown embedding"):
        embed(lab, images, "clip")


def test_disjoint_reference_shares_no_image_with_the_originals(lab):
    originals = np.sort(lab.split.train[:50])
    same = reference_subset(lab, originals, 4, 0, "same")
    disjoint = reference_subset(lab, originals, 4, 0, "disjoint")
    assert np.array_equal(same, originals)
    assert len(np.intersect1d(disjoint, originals)) == 0 and set(disjoint) <= set(lab.split.train)
    assert np.bincount(lab.dataset.labels[disjoint].numpy(), minlength=10).tolist() == [4] * 10
    with pytest.raises(ValueError, match="unknown reference"):
        reference_subset(lab, originals, 4, 0, "val")


def test_sweep_with_random_embedding_and_disjoint_reference(lab):
    config = SweepConfig(t_values=(0, 1000), per_class=6, k=3, sampler=FAST, embedding="random", reference="disjoint")
    result = run_sweep(lab, config)
    assert [row["embedding"] for row in result.rows] == ["random", "random"]
    assert [row["reference"] for row in result.rows] == ["disjoint", "disjoint"]
    assert len(np.intersect1d(result.reference_indices, result.indices)) == 0
    t0 = result.rows[0]
    assert t0["mse"] == 0 and t0["feature_distance"] < 1e-5  # t = 0 still returns the originals ...
    assert t0["frechet_distance"] > 1e-3  # ... but they are measured against other real images
    same = run_sweep(lab, SweepConfig(t_values=(0,), per_class=6, k=3, sampler=FAST, embedding="random"))
    assert same.rows[0]["precision"] == same.rows[0]["coverage"] == 1.0
    np.testing.assert_allclose(result.original_features, embed(lab, result.originals, "random"))


def test_feature_space_uses_the_embedding_and_reference(lab):
    config = FeatureSpaceConfig(source="reconstruct", per_class=5, t=0, k=2, sampler=FAST, embedding="ssl",
                                reference="disjoint")
    result = compute_feature_space(lab, config)
    assert result.embedding == "ssl"
    np.testing.assert_allclose(result.real_features, embed(lab, result.real_images, "ssl"))
    assert result.metrics.overall["frechet_distance"] > 1e-3  # t = 0 against other images is not a perfect match


def test_cli_json_keeps_its_keys_and_adds_the_embedding(capsys):
    from genreg_core.cli.main import main

    assert main(["features", "--source", "reconstruct", "--t", "0", "--n", "4", "--k", "2", "--sampler-steps", "2",
                 "--embedding", "random", "--reference", "disjoint", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"precision", "recall", "density", "coverage", "frechet_distance", "per_class"} <= set(payload)
    assert payload["embedding"] == "random" and payload["reference"] == "disjoint"
    assert main(["sweep", "--t", "0", "--n", "20", "--k", "2", "--sampler-steps", "2", "--embedding", "ssl",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["embedding"] == "ssl" and rows[0]["reference"] == "same" and "coverage" in rows[0]

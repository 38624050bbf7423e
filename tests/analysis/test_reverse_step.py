import numpy as np
import pytest

from genreg_core.analysis.reverse_step import SweepConfig, drift_projection, run_sweep
from genreg_core.config import FeatureConfig, SamplerConfig


@pytest.fixture(scope="module")
def lab():
    from genreg_core.lab import open_lab

    return open_lab()


@pytest.fixture(scope="module")
def sweep(lab):
    config = SweepConfig(t_values=(0, 100, 500, 1000), per_class=8, seed=0, k=3, sampler=SamplerConfig(n_steps=8))
    return run_sweep(lab, config)


def test_t0_is_identity_and_real_vs_real(sweep):
    row = sweep.rows[0]
    assert row["t"] == 0 and row["mse"] == 0 and row["feature_distance"] < 1e-5
    assert row["precision"] == row["recall"] == row["coverage"] == 1.0
    assert row["frechet_distance"] < 1e-3 and row["label_agreement"] == 1.0


def test_distance_grows_with_t_and_coverage_drops(sweep):
    mse = [row["mse"] for row in sweep.rows]
    feat = [row["feature_distance"] for row in sweep.rows]
    assert mse == sorted(mse) and feat == sorted(feat)
    assert sweep.rows[-1]["coverage"] < sweep.rows[1]["coverage"]


def test_shapes_cache_and_contract(lab, sweep):
    n = len(sweep.indices)
    assert n == 80 and sweep.reconstructions.shape == (4, n, 1, 16, 16)
    assert sweep.features.shape == (4, n, lab.extractor.feature_dim)
    keys = {"t", "mse", "feature_distance", "precision", "recall", "density", "coverage", "frechet_distance",
            "centroid_distance", "label_agreement", "embedding", "reference", "source", "seed", "n_uncovered",
            "uncovered", "uncovered_share"}
    assert all(set(row) == keys for row in sweep.rows)
    assert all((row["embedding"], row["reference"], row["source"], row["seed"]) == ("classifier", "same", "train", 0)
               for row in sweep.rows)  # defaults
    assert set(sweep.indices) <= set(lab.split.train)
    again = run_sweep(lab, SweepConfig(t_values=(0, 100, 500, 1000), per_class=8, seed=0, k=3,
                                       sampler=SamplerConfig(n_steps=8)))
    assert again is sweep
    orig_xy, rec_xy = drift_projection(sweep)
    assert orig_xy.shape == (n, 2) and rec_xy.shape == (4, n, 2)
    np.testing.assert_allclose(rec_xy[0], orig_xy, atol=1e-4)


def test_train_accuracy_and_bad_t(lab):
    config = SweepConfig(t_values=(0, 1000), per_class=3, k=2, sampler=SamplerConfig(n_steps=2),
                         train_accuracy=True, classifier=FeatureConfig(width=8, feature_dim=16, epochs=2))
    rows = run_sweep(lab, config).rows
    assert all(0 <= row["train_accuracy_on_reconstructions"] <= 1 for row in rows)
    with pytest.raises(ValueError, match="outside"):
        run_sweep(lab, SweepConfig(t_values=(0, 5000)))


def test_a_lab_at_another_precision_or_compile_never_shares_a_sweep_result(lab):
    from dataclasses import replace

    config = SweepConfig(t_values=(0, 1000), per_class=2, seed=0, k=2, sampler=SamplerConfig(n_steps=2))
    fp32 = run_sweep(lab, config)
    bf16_lab = replace(lab, generator=replace(lab.generator, precision="bf16"))
    compiled_lab = replace(lab, generator=replace(lab.generator, compile=False))
    assert len({lab.key(), bf16_lab.key(), compiled_lab.key()}) == 3
    assert run_sweep(bf16_lab, config) is not fp32
    assert run_sweep(lab, config) is fp32  # the same lab still hits its cached result


def test_test_source_reconstructs_test_images_and_scores_on_val(lab):
    """source="test": originals and the disjoint reference come from the test split (the generator never saw
    them); the train-on-reconstruction accuracy is then scored on val, never on the reconstructed images."""
    config = SweepConfig(t_values=(0, 500), per_class=3, seed=1, k=2, reference="disjoint", source="test",
                         sampler=SamplerConfig(n_steps=2))
    sweep = run_sweep(lab, config)
    assert set(sweep.indices) <= set(lab.split.test) and set(sweep.reference_indices) <= set(lab.split.test)
    assert not set(sweep.indices) & set(sweep.reference_indices)
    assert all(row["source"] == "test" and row["seed"] == 1 for row in sweep.rows)
    with pytest.raises(ValueError, match="unknown image source"):
        run_sweep(lab, SweepConfig(source="val"))


def test_sweep_rows_count_coverage_holes_per_class(lab, sweep):
    for row, holes in zip(sweep.rows, sweep.uncovered, strict=True):
        per_class = [int(holes[sweep.labels == c].sum()) for c in range(lab.n_classes)]
        assert row["uncovered"] == per_class and row["n_uncovered"] == int(holes.sum())
        assert row["n_uncovered"] / len(sweep.labels) == pytest.approx(1 - row["recall"])
    assert sweep.rows[0]["n_uncovered"] == 0  # t = 0 reconstructs the originals: every real image is covered

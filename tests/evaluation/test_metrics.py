import contextlib
import io
import json

import numpy as np
import prdc
import pytest
import scipy.linalg

from genreg_core.evaluation.metrics import (
    METRIC_KEYS,
    compute_prdc,
    distribution_metrics,
    frechet_distance,
    nearest_neighbours,
    uncovered_by_class,
)


def _features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale + shift).astype(np.float32)


def _reference_prdc(real: np.ndarray, synthetic: np.ndarray, k: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        return prdc.compute_prdc(real, synthetic, k)


@pytest.mark.parametrize("n, m, d, k", [(400, 300, 16, 5), (600, 700, 64, 3), (200, 250, 8, 10)])
def test_prdc_matches_reference(n, m, d, k):
    real, synthetic = _features(n, d, seed=n), _features(m, d, seed=m, shift=0.2, scale=1.2)
    ours, ref = compute_prdc(real, synthetic, k), _reference_prdc(real, synthetic, k)
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(ours, key) == pytest.approx(ref[key], abs=1e-6)


def test_prdc_flags_agree_with_scalars():
    real, synthetic = _features(300, 16, seed=0), _features(250, 16, seed=1, shift=0.3)
    result = compute_prdc(real, synthetic, k=5)
    assert result.synthetic_in_manifold.shape == (250,) and result.synthetic_in_manifold.dtype == bool
    assert result.real_covered.shape == (300,) and result.real_recalled.shape == (300,)
    assert result.synthetic_in_manifold.mean() == pytest.approx(result.precision)
    assert result.real_covered.mean() == pytest.approx(result.coverage)
    assert result.real_recalled.mean() == pytest.approx(result.recall)
    assert result.synthetic_density.mean() == pytest.approx(result.density)
    assert np.array_equal(result.synthetic_density > 0, result.synthetic_in_manifold)


def test_identical_sets_are_perfect():
    real = _features(300, 16, seed=2)
    result = compute_prdc(real, real.copy(), k=5)
    assert result.precision == result.recall == result.coverage == 1.0
    assert frechet_distance(real, real.copy()) == pytest.approx(0.0, abs=1e-8)


def test_disjoint_sets_score_zero():
    real, synthetic = _features(200, 8, seed=3), _features(200, 8, seed=4, shift=100.0)
    result = compute_prdc(real, synthetic, k=5)
    assert result.precision == result.recall == result.density == result.coverage == 0.0
    assert frechet_distance(real, synthetic) > 8 * 100.0**2 * 0.9


def test_prdc_rejects_bad_input():
    real, synthetic = _features(10, 4, seed=5), _features(20, 4, seed=6)
    with pytest.raises(ValueError, match="real samples"):
        compute_prdc(real, synthetic, k=10)
    with pytest.raises(ValueError, match="synthetic samples"):
        compute_prdc(synthetic, real, k=10)
    with pytest.raises(ValueError, match="2-D"):
        compute_prdc(real[0], synthetic)
    with pytest.raises(ValueError, match="d=4"):
        compute_prdc(real, synthetic[:, :3])
    bad = real.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_prdc(bad, synthetic)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(real[:1], synthetic)


def test_frechet_distance_of_gaussians_matches_analytic_value():
    rng = np.random.default_rng(7)
    x, y = rng.normal(0.0, 1.0, size=(20000, 1)), rng.normal(2.0, 3.0, size=(20000, 1))
    assert frechet_distance(x, y) == pytest.approx(2.0**2 + (3.0 - 1.0) ** 2, rel=0.05)
    std_x, std_y = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    x, y = rng.normal(size=(20000, 3)) * std_x, rng.normal(size=(20000, 3)) * std_y + 1.0
    expected = 3.0 + np.sum((std_x - std_y) ** 2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.05)


def test_frechet_distance_matches_sqrtm_formula():
    x, y = _features(500, 12, seed=8).astype(np.float64), _features(400, 12, seed=9, shift=0.5, scale=1.5)
    y = y.astype(np.float64)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expected = (np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(cov_x + cov_y)
                - 2.0 * np.trace(scipy.linalg.sqrtm(cov_x @ cov_y).real))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_with_fewer_samples_than_dims():
    value = frechet_distance(_features(10, 64, seed=10), _features(12, 64, seed=11))
    assert np.isfinite(value) and value >= 0.0


def test_distribution_metrics_per_class_and_json():
    real, synthetic = _features(120, 8, seed=12), _features(90, 8, seed=13, shift=0.1)
    real_labels = np.repeat([0, 1, 2], 40)
    synthetic_labels = np.concatenate([np.full(60, 0), np.full(4, 1), np.full(25, 3), np.full(1, 2)])
    result = distribution_metrics(real, synthetic, k=5, real_labels=real_labels, synthetic_labels=synthetic_labels)
    assert set(result.overall) == set(METRIC_KEYS)
    assert result.overall["n_real"] == 120 and result.overall["n_synthetic"] == 90
    assert [row["class"] for row in result.per_class] == [0, 1]  # 2 has one synthetic sample, 3 no real ones
    assert result.per_class[0]["k"] == 5 and result.per_class[1]["k"] == 3
    assert result.per_class[1]["n_synthetic"] == 4
    assert result.prdc.synthetic_in_manifold.shape == (90,)
    decoded = json.loads(json.dumps(result.to_json_dict()))
    assert decoded["precision"] == pytest.approx(result.overall["precision"])
    assert decoded["per_class"][0]["class"] == 0 and isinstance(decoded["k"], int)


def test_distribution_metrics_needs_both_labels():
    real, synthetic = _features(20, 4, seed=14), _features(20, 4, seed=15)
    with pytest.raises(ValueError, match="both"):
        distribution_metrics(real, synthetic, real_labels=np.zeros(20))
    with pytest.raises(ValueError, match="shape"):
        distribution_metrics(real, synthetic, real_labels=np.zeros(19), synthetic_labels=np.zeros(20))


def test_nearest_neighbours_match_brute_force():
    query, reference = _features(50, 16, seed=16), _features(300, 16, seed=17)
    indices, distances = nearest_neighbours(query, reference, n=5)
    brute = np.linalg.norm(query[:, None, :].astype(np.float64) - reference[None, :, :], axis=2)  # (Q, R)
    expected = np.argsort(brute, axis=1)[:, :5]
    assert indices.shape == distances.shape == (50, 5)
    assert np.array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(brute, expected, axis=1), rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(distances, axis=1) >= 0)
    copies, copy_distances = nearest_neighbours(reference[:10], reference, n=1)
    assert np.array_equal(copies[:, 0], np.arange(10)) and np.all(copy_distances < 1e-5)


def test_density_of_a_set_against_itself_is_k_plus_one_over_k_by_an_independent_count():
    # with the "≤ radius" rule each real ball holds its own centre and its k nearest neighbours (no ties)
    x = np.random.default_rng(5).normal(size=(60, 7))
    k = 4
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))  # (N, N) brute force
    radii = np.sort(d + np.diag(np.full(len(x), np.inf)), axis=1)[:, k - 1]  # k-th neighbour, self excluded
    held = sum(int((d[i] <= radii[i]).sum()) for i in range(len(x)))  # synthetic points in real ball i
    independent = held / (k * len(x))
    result = compute_prdc(x, x.copy(), k)
    assert independent == pytest.approx((k + 1) / k)
    assert result.density == pytest.approx(independent, abs=1e-12)


def test_uncovered_are_the_real_points_outside_every_synthetic_ball():
    real, synth = _features(60, 4, 0), _features(40, 4, 1, shift=0.8, scale=0.6)
    real_labels = np.arange(60) % 3
    k = 3
    # by hand: synthetic ball radius = distance to its k-th nearest other synthetic point
    d_yy = np.linalg.norm(synth[:, None] - synth[None], axis=-1)
    radius = np.sort(d_yy, axis=1)[:, k]
    d_xy = np.linalg.norm(real[:, None] - synth[None], axis=-1)
    outside = ~(d_xy <= radius[None]).any(axis=1)
    metrics = distribution_metrics(real, synth, k, real_labels, np.arange(40) % 3)
    rows = uncovered_by_class(metrics.prdc.real_recalled, real_labels)
    assert [r["uncovered"] for r in rows] == [int(outside[real_labels == c].sum()) for c in range(3)]
    assert [r["n_real"] for r in rows] == [20, 20, 20]
    assert rows[1]["share"] == pytest.approx(outside[real_labels == 1].mean())
    payload = metrics.to_json_dict()
    assert payload["n_uncovered"] == int(outside.sum()) > 0
    assert payload["uncovered"] == rows
    assert 1 - payload["n_uncovered"] / 60 == pytest.approx(payload["recall"])

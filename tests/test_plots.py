"""Figure builders: legends, colours, axis titles and ranges a reader needs."""

import numpy as np
import pytest

from genreg_core.plots import (
    BOUNDED,
    PALETTE,
    drift_scatter,
    feature_scatter,
    quality_chart,
    reference_scatter,
    run_curves,
    sweep_curves,
)

NAMES = [str(c) for c in range(10)]


def _points(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)), rng.integers(0, 10, n)


def test_class_filter_keeps_every_point_and_fades_the_rest():
    real_xy, real_y = _points()
    synth_xy, synth_y = _points(seed=1)
    full = feature_scatter(real_xy, synth_xy, real_y, synth_y, NAMES)
    filtered = feature_scatter(real_xy, synth_xy, real_y, synth_y, NAMES, highlight_classes=[3])
    count = lambda fig: sum(len(t.x) for t in fig.data)  # noqa: E731
    assert count(filtered) == count(full) == 80
    backdrop = next(t for t in filtered.data if t.name == "other classes")
    assert len(backdrop.x) == int((real_y != 3).sum() + (synth_y != 3).sum())
    assert backdrop.customdata is None  # faded points are not selectable
    shown = [t for t in filtered.data if t.name != "other classes"]
    assert sum(len(t.x) for t in shown) == int((real_y == 3).sum() + (synth_y == 3).sum())


def test_projection_axes_are_titled():
    real_xy, real_y = _points()
    fig = feature_scatter(real_xy, real_xy, real_y, real_y, NAMES, axis_name="UMAP")
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("UMAP 1", "UMAP 2")
    xyz = np.random.default_rng(0).normal(size=(40, 3))
    fig3 = feature_scatter(xyz, xyz, real_y, real_y, NAMES, axis_name="PC")
    assert fig3.layout.scene.zaxis.title.text == "PC 3"


def test_sweep_curves_fix_the_range_of_bounded_metrics():
    rows = [{"t": t, "coverage": 1.0 - 0.005 * (t == 500), "mse": 0.1 * t / 1000} for t in (0, 500, 1000)]
    fig = sweep_curves(rows, ["coverage", "mse"], n_cols=2)
    assert "coverage" in BOUNDED and tuple(fig.layout.yaxis.range) == (0, 1.05)
    assert fig.layout.yaxis2.range is None and fig.layout.yaxis2.rangemode == "tozero"
    assert fig.layout.yaxis.title.text == "coverage" and fig.layout.xaxis.title.text == "start step t"
    assert [a.text for a in fig.layout.annotations] == ["coverage", "pixel MSE to the original"]


def test_drift_scatter_has_one_legend_entry_per_class_in_its_colour():
    labels = np.array([0, 0, 1, 2, 2, 2])
    fig = drift_scatter(np.zeros((6, 2)), np.ones((3, 6, 2)), [0, 500, 1000], labels, NAMES)
    originals = [t for t in fig.data if t.legendgroup == "originals"]
    assert [t.name for t in originals] == ["original · class 0", "original · class 1", "original · class 2"]
    assert [t.marker.color for t in originals] == [PALETTE[0], PALETTE[1], PALETTE[2]]
    assert [t.name for t in fig.data if t.legendgroup == "reconstructions"] == ["t = 0", "t = 500", "t = 1000"]
    assert fig.layout.xaxis.title.text == "PC 1"


def test_reference_scatter_colours_mu_bar_by_class_and_explains_the_references():
    K = 3
    rng = np.random.default_rng(0)
    fig = reference_scatter(rng.normal(size=(9, 2)), np.repeat(np.arange(K), 3), rng.normal(size=(K, 2)),
                            rng.normal(size=(K, 2)), rng.normal(size=(6, 2)), np.repeat(np.arange(K), 2), NAMES[:K])
    mu_bar = next(t for t in fig.data if (t.name or "").startswith("μ̄"))
    assert list(mu_bar.marker.color) == PALETTE[:K]
    assert any((t.name or "").startswith("reference z") and t.showlegend is not False for t in fig.data)


def test_quality_chart_places_each_generator_at_its_fidelity_and_ce_as_a_level():
    rows = [{"method": "gda", "per_class": "10", "generator": "shipped-early", "generator_fidelity": 0.45,
             "test_accuracy_mean": 0.60, "test_accuracy_std": 0.02, "runs": 3},
            {"method": "gda", "per_class": "10", "generator": "shipped", "generator_fidelity": 0.714,
             "test_accuracy_mean": 0.70, "test_accuracy_std": float("nan"), "runs": 1},
            {"method": "ce", "per_class": "10", "generator": "shipped", "generator_fidelity": 0.714,
             "test_accuracy_mean": 0.66, "test_accuracy_std": 0.01, "runs": 2},
            {"method": "ce", "per_class": "10", "generator": "shipped-early", "generator_fidelity": 0.45,
             "test_accuracy_mean": 0.63, "test_accuracy_std": 0.01, "runs": 1}]
    fig = quality_chart(rows, {"gda", "mgr"})
    gda = next(t for t in fig.data if t.name.startswith("gda"))
    assert list(gda.x) == pytest.approx([45.0, 71.4]) and list(gda.y) == pytest.approx([60.0, 70.0])
    assert gda.error_y.array[0] == pytest.approx(2.0) and gda.error_y.array[1] is None  # no bar for the single run
    ce = next(t for t in fig.data if t.name.startswith("ce"))
    assert ce.line.dash == "dash" and list(ce.x) == pytest.approx([45.0, 71.4])
    assert ce.y[0] == ce.y[1] == pytest.approx((0.66 * 2 + 0.63) / 3 * 100) and "(3 runs)" in ce.name


def test_run_curves_put_the_once_read_test_point_on_the_shared_epoch_axis():
    history = {"val_loss": [(1, 2.0), (2, 1.5), (3, 1.6)], "test_accuracy": [(2, 0.7)]}
    fig = run_curves({"a": history, "b": {"val_loss": [(1, 2.1)]}}, ["val_loss", "test_accuracy"],
                     titles={"test_accuracy": "test (read once)"})
    assert [a.text for a in fig.layout.annotations] == ["val_loss", "test (read once)"]
    assert fig.layout.xaxis2.matches == "x"  # one epoch axis: the lone test point sits at its epoch, not alone
    a_test = next(t for t in fig.data if t.name == "a" and t.xaxis == "x2")
    assert list(a_test.x) == [2] and list(a_test.y) == [0.7] and a_test.marker.size > 4
    assert [t.showlegend for t in fig.data] == [True, False, True, False]  # one legend entry a run

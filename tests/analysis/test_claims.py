"""The claims' verdict logic on constructed numbers."""

from __future__ import annotations

import pytest

from genreg_core.analysis.claims import (
    claims_markdown,
    compare,
    judge_adarand_finetuning,
    judge_claims,
    judge_gda_degradation,
    judge_mgr_small_data,
    judge_reverse_step,
    load_claims,
    save_claims,
)


def _rows(method, accs, per_class=5, init="scratch", regime="pool", seconds=10.0):
    return [{"init": init, "regime": regime, "method": method, "per_class": per_class, "seed": s, "epochs": 30,
             "test_accuracy": a, "seconds": seconds} for s, a in enumerate(accs)]


def test_compare_needs_two_standard_errors_and_half_a_point():
    assert compare([0.80, 0.81, 0.79], [0.70, 0.71, 0.69]) == "higher"
    assert compare([0.70, 0.71, 0.69], [0.80, 0.81, 0.79]) == "lower"
    assert compare([0.80, 0.90, 0.70], [0.78, 0.88, 0.68]) == "tie"  # 2 points apart, 10 points of spread
    assert compare([0.803], [0.800]) == "tie"  # below half a point


def test_gda_degradation_verdicts():
    ce, low, high = [0.80, 0.81, 0.79], [0.70, 0.71, 0.69], [0.90, 0.91, 0.89]
    reproduced = judge_gda_degradation(_rows("ce", ce) + _rows("gda", low) + _rows("mgr", [0.81, 0.80, 0.82]))
    assert reproduced.verdict == "reproduced" and "GDA 70.0 vs CE 80.0, MGR 81.0" in reproduced.numbers
    assert judge_gda_degradation(_rows("ce", ce) + _rows("gda", low) + _rows("mgr", low)).verdict == "not reproduced"
    assert judge_gda_degradation(_rows("ce", ce) + _rows("gda", low)).verdict == "not tested"  # no MGR to judge
    assert judge_gda_degradation(_rows("ce", ce) + _rows("gda", high)).verdict == "reversed"
    assert judge_gda_degradation(_rows("ce", ce) + _rows("gda", ce)).verdict == "not reproduced"
    # CE runs once and counts under the own regime too: GDA with its own generator degrades there
    mixed = _rows("ce", ce) + _rows("gda", high) + _rows("gda", low, regime="own") + _rows("mgr", ce, regime="own")
    assert judge_gda_degradation(mixed).verdict == "reproduced"


def test_mgr_small_data_verdicts():
    def grid(gain_small, gain_large):
        return (_rows("ce", [0.70, 0.71, 0.69]) + _rows("ce", [0.95, 0.96, 0.94], per_class=25)
                + _rows("mgr", [0.70 + gain_small + d for d in (0, 0.01, -0.01)])
                + _rows("mgr", [0.95 + gain_large + d for d in (0, 0.01, -0.01)], per_class=25))

    assert judge_mgr_small_data(grid(0.07, 0.0)).verdict == "reproduced"
    assert judge_mgr_small_data(grid(0.0, 0.0)).verdict == "not reproduced"
    assert judge_mgr_small_data(grid(-0.05, 0.0)).verdict == "reversed"
    assert judge_mgr_small_data(grid(0.0, 0.04)).verdict == "reversed"
    assert judge_mgr_small_data(_rows("ce", [0.7]) + _rows("mgr", [0.8])).verdict == "not tested"  # one N only


def test_adarand_finetuning_needs_pretrained_runs_and_modest_cost():
    ce, rr, ada = [0.80, 0.81, 0.79], [0.82, 0.83, 0.81], [0.88, 0.89, 0.87]
    rows = _rows("ce", ce, init="pretrained") + _rows("randreg", rr, init="pretrained")
    assert judge_adarand_finetuning(rows + _rows("adarand", ada, init="pretrained", seconds=12)).verdict == "reproduced"
    slow = judge_adarand_finetuning(rows + _rows("adarand", ada, init="pretrained", seconds=30))
    assert slow.verdict == "not reproduced" and slow.details["cost_ratio"] == pytest.approx(30 / 10)
    assert judge_adarand_finetuning(rows + _rows("adarand", [0.7, 0.71, 0.69], init="pretrained")).verdict == "reversed"
    scratch_only = _rows("ce", ce) + _rows("randreg", rr) + _rows("adarand", ada)
    assert judge_adarand_finetuning(scratch_only).verdict == "not tested"


def test_reverse_step_diversity_verdicts():
    def sweep(coverage_end, recall_end):
        return [{"t": 0, "coverage": 1.0, "recall": 0.9}, {"t": 500, "coverage": 0.95, "recall": 0.9},
                {"t": 1000, "coverage": coverage_end, "recall": recall_end}]

    assert judge_reverse_step({"random": sweep(0.80, 0.9)}).verdict == "reproduced"
    assert judge_reverse_step({"classifier": sweep(0.99, 0.88)}).verdict == "not reproduced"
    assert judge_reverse_step({"x": [{"t": 0, "coverage": 0.5, "recall": 0.5},
                                     {"t": 1000, "coverage": 0.7, "recall": 0.6}]}).verdict == "reversed"
    assert judge_reverse_step({"a": sweep(0.80, 0.9), "b": sweep(0.99, 0.9)}).verdict == "reproduced"
    assert judge_reverse_step({}).verdict == "not tested"


def test_claims_round_trip_through_json_and_markdown(tmp_path):
    claims = judge_claims(_rows("ce", [0.8, 0.81]) + _rows("gda", [0.9, 0.91]), {})
    save_claims(claims, tmp_path / "claims.json", {"setting": "constructed"})
    loaded, meta = load_claims(tmp_path / "claims.json")
    assert loaded == claims and meta == {"setting": "constructed"}
    table = claims_markdown(loaded, link=True)
    assert table.count("\n") == 2 + len(claims) and "[Reverse start step](/reverse_step)" in table
    with pytest.raises(ValueError, match="no claims table"):
        load_claims(tmp_path / "missing.json")

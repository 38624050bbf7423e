"""The claims on constructed grids whose answers are known: pairing, missing cells, the threshold boundary."""

from __future__ import annotations

import json

import pytest

from genreg_core.analysis.claims import (
    claim_datasets,
    claims_markdown,
    grid_cells,
    judge_adarand_finetuning,
    judge_claims,
    judge_gda_degradation,
    judge_mgr_beats_gda,
    judge_mgr_small_data,
    judge_reverse_step,
    load_claims,
    save_claims,
)
from genreg_core.training.methods import GENERATOR_METHODS, METHODS

CE = [0.70, 0.80, 0.75, 0.85, 0.65]  # seeds differ by up to 20 points: only pairing sees a 2-point gap


def _rows(method, accs, per_class=5, init="scratch", regime="pool", seconds=10.0, seeds=None, overrides=()):
    return [{"init": init, "regime": regime, "method": method, "per_class": per_class, "seed": s, "epochs": 30,
             "test_accuracy": a, "seconds": seconds, "set": list(overrides)}
            for s, a in zip(seeds or range(len(accs)), accs)]


def _shift(accs, by, wobble=0.002):
    """Each seed's accuracy moved by ``by`` plus a small alternating wobble (so the paired sd is not zero)."""
    return [a + by + (wobble if i % 2 else -wobble) for i, a in enumerate(accs)]


def _cells(rows):
    return grid_cells(rows, frozenset(GENERATOR_METHODS))


def test_generator_methods_come_from_the_registry():
    assert set(GENERATOR_METHODS) == {name for name, cls in METHODS.items() if cls.needs_generator}


def test_gda_degradation_is_judged_by_paired_differences():
    two_points_down = judge_gda_degradation(_cells(_rows("ce", CE) + _rows("gda", _shift(CE, -0.02))))
    assert two_points_down.verdict == "reproduced"  # a 2-point paired loss despite 20 points of seed spread
    (comparison,) = two_points_down.details["comparisons"]
    assert comparison["n"] == 5 and comparison["mean"] == pytest.approx(-0.02 - 0.002 / 5)
    assert judge_gda_degradation(_cells(_rows("ce", CE) + _rows("gda", _shift(CE, 0.05)))).verdict == "reversed"
    assert judge_gda_degradation(_cells(_rows("ce", CE) + _rows("gda", _shift(CE, 0.0)))).verdict == "not reproduced"


def test_missing_cells_and_unpaired_seeds_are_inconclusive():
    four_seeds = _rows("ce", CE) + _rows("gda", _shift(CE[:4], -0.10))
    assert judge_gda_degradation(_cells(four_seeds)).verdict == "inconclusive"  # 4 pairs < 5
    other_seeds = _rows("ce", CE) + _rows("gda", _shift(CE, -0.10), seeds=range(5, 10))
    result = judge_gda_degradation(_cells(other_seeds))
    assert result.verdict == "inconclusive" and result.details["comparisons"][0]["unpaired"] == list(range(10))
    no_mgr = judge_mgr_beats_gda(_cells(_rows("ce", CE) + _rows("gda", CE)))
    assert no_mgr.verdict == "inconclusive" and "no paired seeds" in no_mgr.numbers


def test_a_seed_twice_in_a_cell_is_refused():
    with pytest.raises(ValueError, match="seed 0 appears twice"):
        _cells(_rows("ce", CE) + _rows("ce", [0.5]))


def test_methods_without_a_generator_count_under_every_regime():
    rows = _rows("ce", CE) + _rows("gda", _shift(CE, 0.05)) + _rows("gda", _shift(CE, -0.05), regime="own")
    result = judge_gda_degradation(_cells(rows))
    verdicts = {c["setting"][1]: c["verdict"] for c in result.details["comparisons"]}
    assert verdicts == {"pool": "reversed", "own": "reproduced"} and result.verdict == "reproduced"


def test_mgr_beats_gda_is_judged_on_equal_total_labels_only():
    rows = (_rows("gda", CE) + _rows("mgr", _shift(CE, -0.05))
            + _rows("mgr", _shift(CE, 0.05), overrides=["meta_val_budget=extra"]))
    result = judge_mgr_beats_gda(_cells(rows))
    assert result.verdict == "reversed"  # the extra-label runs would say the opposite, and do not count
    assert [c["verdict"] for c in result.details["extra_budget"]] == ["reproduced"]
    assert "mgr[meta_val_budget=extra] − gda" in result.numbers


def test_mgr_small_data_compares_the_gains():
    def grid(gain_small, gain_large):
        large = [0.95, 0.96, 0.94, 0.955, 0.945]
        return _cells(_rows("ce", CE) + _rows("ce", large, per_class=25) + _rows("mgr", _shift(CE, gain_small))
                      + _rows("mgr", _shift(large, gain_large), per_class=25))

    assert judge_mgr_small_data(grid(0.05, 0.0)).verdict == "reproduced"
    assert judge_mgr_small_data(grid(0.0, 0.05)).verdict == "reversed"
    assert judge_mgr_small_data(grid(0.01, 0.01)).verdict == "not reproduced"
    assert judge_mgr_small_data(_cells(_rows("ce", CE) + _rows("mgr", CE))).verdict == "inconclusive"  # one N


def test_adarand_needs_both_wins_and_a_modest_cost():
    base = _rows("ce", CE, init="pretrained") + _rows("randreg", _shift(CE, 0.01), init="pretrained")
    win = _rows("adarand", _shift(CE, 0.05), init="pretrained")
    rows = base + win
    assert judge_adarand_finetuning(_cells(rows), rows).verdict == "reproduced"
    slow = base + _rows("adarand", _shift(CE, 0.05), init="pretrained", seconds=20.0)
    assert judge_adarand_finetuning(_cells(slow), slow).verdict == "not reproduced"  # 2× CE's time
    tie = base + _rows("adarand", _shift(CE, 0.015), init="pretrained")  # 1.5 over CE, 0.5 over RandReg
    assert judge_adarand_finetuning(_cells(tie), tie).verdict == "not reproduced"


def _sweep(coverage_after, accuracy_after=0.5, seeds=5):
    rows = []
    for s in range(seeds):
        rows.append({"t": 100, "seed": s, "coverage": 1.0, "recall": 0.9, "train_accuracy_on_reconstructions": 0.9})
        rows.append({"t": 900, "seed": s, "coverage": coverage_after, "recall": 0.9,
                     "train_accuracy_on_reconstructions": accuracy_after})
    return rows


def test_reverse_step_threshold_boundary_is_not_floating_point():
    """The review's case: coverage 1.00 → 0.95 is a fall of 0.050000000000000044 against δ = 0.05: inconclusive."""
    assert judge_reverse_step({"c": _sweep(0.95)}).verdict == "inconclusive"
    assert judge_reverse_step({"c": _sweep(0.90)}).verdict == "reproduced"
    assert judge_reverse_step({"c": _sweep(0.90, accuracy_after=0.9)}).verdict == "not reproduced"  # accuracy kept
    assert judge_reverse_step({"c": _sweep(0.90, seeds=1)}).verdict == "inconclusive"  # one noise draw
    assert judge_reverse_step({}).verdict == "inconclusive"


def test_seven_claims_and_markdown_state_the_spread():
    claims = judge_claims(_rows("ce", CE) + _rows("gda", CE), {})
    assert [c.key for c in claims] == ["gda_degrades", "mgr_beats_gda", "mgr_small_data", "adarand_finetuning",
                                       "reverse_step", "semantic_low_data", "gssl_helps"]
    text = claims_markdown(claims)
    assert "ddof = 1" in text and text.count("\n| ") == 8


def test_claims_json_is_keyed_by_dataset(tmp_path):
    path = tmp_path / "claims.json"
    digits = judge_claims(_rows("ce", CE) + _rows("gda", _shift(CE, -0.02)))
    fashion = judge_claims(_rows("ce", CE) + _rows("gda", _shift(CE, 0.05)))
    save_claims(digits, path, "digits", {"setting": "constructed"})
    save_claims(fashion, path, "fashion-mnist", {"setting": "other"})
    assert claim_datasets(path) == ["digits", "fashion-mnist"]
    loaded, meta = load_claims(path, "digits")
    assert loaded == digits and meta == {"setting": "constructed"}
    assert load_claims(path, "fashion-mnist")[0][0].verdict == "reversed"
    with pytest.raises(ValueError, match="no claims for dataset 'cifar10'"):
        load_claims(path, "cifar10")
    path.write_text(json.dumps({"claims": []}))
    with pytest.raises(ValueError, match="per-dataset"):
        load_claims(path)
    with pytest.raises(ValueError, match="no claims table"):
        load_claims(tmp_path / "missing.json")

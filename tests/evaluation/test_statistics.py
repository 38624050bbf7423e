"""Paired statistics and the four-way verdict, on constructed numbers whose answers are known by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from genreg_core.evaluation.statistics import (
    Paired,
    Threshold,
    all_of,
    any_of,
    bootstrap_interval,
    compare_independent,
    compare_paired,
    judge,
    mean_sd,
    pair_by_seed,
    t_interval,
)

DELTA = Threshold(0.05, 1e-3)


def _constant(diff: float, n: int = 5) -> Paired:
    """A comparison whose every paired difference is ``diff`` (zero spread: the interval is the point)."""
    return compare_paired({s: 0.5 + diff for s in range(n)}, {s: 0.5 for s in range(n)})


def test_mean_sd_uses_the_sample_std():
    mean, sd, n = mean_sd([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4)
    assert sd == pytest.approx(math.sqrt(5 / 3))  # Σ(x − 2.5)² = 5, over n − 1 = 3
    assert math.isnan(mean_sd([1.0])[1])


def test_t_interval_matches_the_table_value():
    low, high = t_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} from a printed t table
    assert (low, high) == (pytest.approx(3 - half), pytest.approx(3 + half))


def test_pairing_keeps_common_seeds_only():
    seeds, diffs, unpaired = pair_by_seed({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.6, 2: 0.6, 3: 0.1})
    assert seeds == [1, 2] and unpaired == [0, 3]
    assert diffs.tolist() == pytest.approx([0.2, 0.1])


def test_pairing_beats_unpaired_when_seeds_share_their_spread():
    """Seeds differ by 10 points, the methods by exactly 1: the paired interval is the point, the unpaired one wide."""
    base = {s: 0.5 + 0.1 * s for s in range(5)}
    better = {s: v + 0.01 for s, v in base.items()}
    paired = compare_paired(better, base)
    assert paired.low == pytest.approx(0.01) and paired.high == pytest.approx(0.01)
    unpaired = compare_independent(list(better.values()), list(base.values()))
    assert unpaired.low < 0 < unpaired.high


def test_bootstrap_of_two_values_has_the_enumerated_quantiles():
    # resampled means of (0, 1) are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5 % and 97.5 % quantiles
    assert bootstrap_interval(np.array([0.0, 1.0])) == (0.0, 1.0)
    assert compare_paired({0: 1.0, 1: 1.0}, {0: 0.0, 1: 1.0}, method="bootstrap").mean == 0.5


def test_welch_interval_matches_scipy():
    a, b = [0.9, 0.85, 0.88, 0.92, 0.8], [0.7, 0.75, 0.72, 0.69, 0.8, 0.71]
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    p = compare_independent(a, b)
    assert (p.low, p.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_verdicts_on_constructed_differences():
    assert judge(_constant(0.10), DELTA) == "reproduced"
    assert judge(_constant(-0.10), DELTA) == "reversed"
    assert judge(_constant(0.0), DELTA) == "not reproduced"
    assert judge(_constant(-0.10), DELTA, direction="lower") == "reproduced"
    straddling = compare_paired({s: d for s, d in enumerate([0.0, 0.1, 0.05, 0.08, 0.02])}, dict.fromkeys(range(5), 0))
    assert straddling.low < 0.05 < straddling.high
    assert judge(straddling, DELTA) == "inconclusive"


def test_the_threshold_is_never_decided_by_floating_point():
    """The review's case: coverage 1.00 → 0.95 is a fall of 0.050000000000000044 against δ = 0.05."""
    fall = 1.0 - 0.95
    assert fall > 0.05  # what decided the old verdict
    at_threshold = compare_paired(dict.fromkeys(range(5), 1.0), dict.fromkeys(range(5), 0.95))
    assert judge(at_threshold, DELTA) == "inconclusive"
    assert judge(_constant(0.05 + 0.0011), DELTA) == "reproduced"  # beyond the stated tolerance
    assert judge(_constant(0.05 - 0.0009), DELTA) == "inconclusive"  # inside it, on either side
    assert judge(_constant(-0.05 - 0.0009), DELTA) == "not reproduced"  # touching −δ is not a reversal


def test_too_few_pairs_are_inconclusive_whatever_the_effect():
    assert judge(_constant(0.5, n=4), DELTA) == "inconclusive"
    unpaired = compare_paired({s: 1.0 for s in range(5)}, {s: 0.0 for s in range(5, 10)})
    assert unpaired.n == 0 and unpaired.unpaired == tuple(range(10))
    assert judge(unpaired, DELTA) == "inconclusive"
    missing = compare_paired({s: 1.0 for s in range(5)}, {s: 0.0 for s in range(4)})  # one cell short of 5 pairs
    assert missing.n == 4 and judge(missing, DELTA) == "inconclusive"


def test_combining_settings():
    assert all_of(["reproduced", "reproduced"]) == "reproduced"
    assert all_of(["reproduced", "inconclusive"]) == "inconclusive"
    assert all_of(["reproduced", "not reproduced"]) == "not reproduced"
    assert all_of(["reversed", "reversed"]) == "reversed"
    assert all_of([]) == "inconclusive"
    assert any_of(["not reproduced", "reproduced"]) == "reproduced"
    assert any_of(["not reproduced", "inconclusive"]) == "inconclusive"
    assert any_of(["reversed", "reversed"]) == "reversed"
    assert any_of(["reversed", "not reproduced"]) == "not reproduced"


def test_bad_threshold_is_refused():
    with pytest.raises(ValueError, match="tolerance"):
        Threshold(0.05, 0.0)

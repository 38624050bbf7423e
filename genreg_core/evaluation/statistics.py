"""Paired comparisons over seeds and the four-way verdict every claim and table uses.

Two methods run on the same seeds (same labelled subset, same initialisation, same noise) are compared by the
per-seed differences ``a[s] − b[s]``: their mean, the sample standard deviation (``ddof = 1``, the only spread
used anywhere in the reports) and a 95 % interval — Student's t on ``n − 1`` degrees of freedom, or a paired
percentile bootstrap. Seeds present on one side only are left out and reported as unpaired.

A claim "A beats B by at least the practical threshold δ" is then judged on that interval (``judge``):

- **reproduced**: the whole interval lies above δ;
- **reversed**: the whole interval lies below −δ (B beats A by at least δ);
- **not reproduced**: the interval lies below δ (a gain of δ is ruled out) without lying below −δ;
- **inconclusive**: the interval straddles δ, or fewer than ``MIN_PAIRS`` seeds are paired.

Every comparison with δ is made with an explicit tolerance: an end of the interval within ``tolerance`` of a
threshold counts as touching it, so floating-point noise (0.05 + 4e-17 against 0.05) never decides a verdict —
touching δ is inconclusive, never reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["reproduced", "not reproduced", "reversed", "inconclusive"]
VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "reversed", "inconclusive")
Direction = Literal["higher", "lower"]
IntervalMethod = Literal["t", "bootstrap"]
MIN_PAIRS = 5  # fewer paired seeds than this are too few to call a verdict
CONFIDENCE = 0.95
DDOF = 1  # sample standard deviation everywhere
SPREAD_NOTE = "± is the sample standard deviation over seeds (ddof = 1)"


@dataclass(frozen=True)
class Threshold:
    """A practical threshold δ and the tolerance within which a value counts as touching it."""

    value: float  # δ ≥ 0, in the unit of the compared numbers (accuracy 0.01 = one point)
    tolerance: float  # > 0: ends of an interval within this of ±δ touch it (not a floating-point accident)
    unit: str = ""  # what the numbers are, for the reports

    def __post_init__(self) -> None:
        if not (self.value >= 0 and self.tolerance > 0):
            raise ValueError(f"a threshold needs δ ≥ 0 and a tolerance > 0, got δ={self.value}, "
                             f"tolerance={self.tolerance}")


@dataclass(frozen=True)
class Paired:
    """The paired comparison of ``a − b`` over the seeds both have."""

    n: int  # paired seeds
    mean: float  # mean difference (nan when n = 0)
    sd: float  # sample std of the differences, ddof = 1 (nan when n < 2)
    low: float  # lower end of the interval (nan when n < 2)
    high: float  # upper end of the interval
    seeds: tuple[int, ...] = ()  # the paired seeds
    unpaired: tuple[int, ...] = ()  # seeds present on one side only (left out)
    method: IntervalMethod = "t"
    confidence: float = CONFIDENCE
    differences: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict:
        """Plain JSON values (a missing number is ``None``, never NaN)."""
        def number(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {"n": self.n, "mean": number(self.mean), "sd": number(self.sd), "low": number(self.low),
                "high": number(self.high),
                "seeds": list(self.seeds), "unpaired": list(self.unpaired), "interval": self.method,
                "confidence": self.confidence}


def mean_sd(values: list[float] | np.ndarray) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, n); the std is nan for fewer than two values, the mean for none."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=DDOF)) if x.size > 1 else math.nan, int(x.size)


def pair_by_seed(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list[int], np.ndarray, list[int]]:
    """(common seeds sorted, differences a[s] − b[s] in that order, seeds on one side only)."""
    seeds = sorted(set(a) & set(b))
    unpaired = sorted(set(a) ^ set(b))
    return seeds, np.array([a[s] - b[s] for s in seeds], dtype=float), unpaired


def t_interval(differences: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean: mean ± t_{(1+c)/2, n−1} · sd / √n; (nan, nan) below two values."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, d.size - 1)) * float(d.std(ddof=DDOF)) / math.sqrt(d.size)
    return float(d.mean()) - half, float(d.mean()) + half


def bootstrap_interval(differences: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Paired percentile bootstrap of the mean difference (seeds resampled with replacement)."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def compare_paired(a: Mapping[int, float], b: Mapping[int, float], method: IntervalMethod = "t",
                   confidence: float = CONFIDENCE) -> Paired:
    """``a − b`` paired by seed (``{seed: value}`` each), with a t or bootstrap interval."""
    if method not in ("t", "bootstrap"):
        raise ValueError(f"unknown interval method {method!r} (known: t, bootstrap)")
    seeds, d, unpaired = pair_by_seed(a, b)
    low, high = t_interval(d, confidence) if method == "t" else bootstrap_interval(d, confidence)
    mean, sd, n = mean_sd(d)
    return Paired(n, mean, sd, low, high, tuple(seeds), tuple(unpaired), method, confidence, tuple(d.tolist()))


def compare_independent(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> Paired:
    """``mean(a) − mean(b)`` for samples that cannot be paired, with Welch's t interval; ``n`` is the smaller
    sample size (what the MIN_PAIRS rule counts)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = int(min(x.size, y.size))
    mean = float(x.mean() - y.mean()) if n else math.nan
    if n < 2:
        return Paired(n, mean, math.nan, math.nan, math.nan, method="t", confidence=confidence)
    vx, vy = x.var(ddof=DDOF) / x.size, y.var(ddof=DDOF) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        return Paired(n, mean, 0.0, mean, mean, method="t", confidence=confidence)
    dof = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, dof)) * se
    return Paired(n, mean, se, mean - half, mean + half, method="t", confidence=confidence)


def judge(comparison: Paired, threshold: Threshold, direction: Direction = "higher",
          min_pairs: int = MIN_PAIRS) -> Verdict:
    """The four-way verdict of the claim "a − b is beyond δ in ``direction``" (see the module docstring)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"unknown direction {direction!r} (known: higher, lower)")
    if comparison.n < min_pairs or math.isnan(comparison.low) or math.isnan(comparison.high):
        return "inconclusive"
    sign = 1.0 if direction == "higher" else -1.0
    low, high = sorted((sign * comparison.low, sign * comparison.high))  # the claimed direction made positive
    delta, tol = threshold.value, threshold.tolerance
    if low > delta + tol:
        return "reproduced"
    if high < -delta - tol:
        return "reversed"
    if high < delta - tol:
        return "not reproduced"
    return "inconclusive"


def all_of(verdicts: list[str]) -> Verdict:
    """A claim that must hold in every setting: reproduced (reversed) when all settings say so; not reproduced
    when some setting contradicts it; inconclusive when none contradicts it but some cannot tell, or none ran."""
    if not verdicts:
        return "inconclusive"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if all(v == "reversed" for v in verdicts):
        return "reversed"
    if all(v in ("reproduced", "inconclusive") for v in verdicts):
        return "inconclusive"
    return "not reproduced"


def any_of(verdicts: list[str]) -> Verdict:
    """A claim that some setting suffices for ("can degrade"): reproduced when one setting reproduces it;
    inconclusive when none does but some cannot tell, or none ran; reversed when every setting is reversed."""
    if not verdicts:
        return "inconclusive"
    if "reproduced" in verdicts:
        return "reproduced"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "reversed" if all(v == "reversed" for v in verdicts) else "not reproduced"


def format_interval(p: Paired, scale: float = 100.0, digits: int = 1) -> str:
    """``+1.2 [−0.3, +2.7] (n 5)`` in the given scale (100: points of accuracy)."""
    if p.n == 0:
        return "no paired seeds"
    if math.isnan(p.low):
        return f"{scale * p.mean:+.{digits}f} (n {p.n}, no interval)"
    return f"{scale * p.mean:+.{digits}f} [{scale * p.low:+.{digits}f}, {scale * p.high:+.{digits}f}] (n {p.n})"

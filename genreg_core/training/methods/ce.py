"""CE: plain cross-entropy on the real training set, the baseline every method adds to (docs/algorithms.md §3)."""

from __future__ import annotations

from genreg_core.training.methods.base import Method


class CrossEntropy(Method):
    """``L = CE(y, h(g(x)))`` on the real batch; the base :class:`Method` hooks as they are."""

    name = "ce"
    note = "cross-entropy on the real images only (baseline)"

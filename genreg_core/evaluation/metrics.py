"""Distribution metrics between real and synthetic features (docs/algorithms.md §2).

Precision, recall, density and coverage follow Naeem et al. 2020, "Reliable Fidelity and Diversity
Metrics for Generative Models" (precision / recall from Kynkäänniemi et al. 2019), with closed balls:
a point lies in the ball of ``X_i`` when ``‖· − X_i‖ ≤ r_k(X_i, X)``, the distance from ``X_i`` to its
k-th nearest neighbour in ``X`` (itself excluded). The ``prdc`` package uses open balls (``<``); the
two agree except on exact distance ties (duplicated points).

Distances are computed in float64 with torch, block by block, so memory stays bounded for large sets
and the work is a few matrix products plus ``topk``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

_BLOCK_ENTRIES = 1 << 22  # entries of one block of the distance matrix (32 MiB of float64)
METRIC_KEYS = ("precision", "recall", "density", "coverage", "frechet_distance", "k", "n_real", "n_synthetic")


@dataclass
class PRDCResult:
    """The four PRDC numbers and the per-sample flags behind them."""

    precision: float  # share of synthetic points inside some real k-NN ball
    recall: float  # share of real points inside some synthetic k-NN ball
    density: float  # mean number of real balls holding a synthetic point, divided by k
    coverage: float  # share of real balls that hold at least one synthetic point
    k: int  # neighbour rank of the ball radii
    synthetic_in_manifold: np.ndarray  # (M,) bool, inside some real k-NN ball
    real_covered: np.ndarray  # (N,) bool, own k-NN ball holds a synthetic point
    real_recalled: np.ndarray  # (N,) bool, inside some synthetic k-NN ball
    synthetic_density: np.ndarray  # (M,) float, number of real balls holding the point / k


def _plain(row: dict) -> dict:
    return {key: int(v) if isinstance(v, (int, np.integer)) else float(v) for key, v in row.items()}


@dataclass
class DistributionMetrics:
    """Metrics over all samples and per class, with the overall per-sample flags."""

    overall: dict  # keys METRIC_KEYS
    per_class: list[dict]  # {"class": c, **METRIC_KEYS} for each class with ≥ 2 samples on both sides
    prdc: PRDCResult  # the overall per-sample flags
    # coverage holes: {"class", "n_real", "uncovered", "share"} per class of the real labels (see uncovered_by_class)
    uncovered: list[dict] = field(default_factory=list)

    def to_json_dict(self) -> dict:
        """``{**overall, "per_class": per_class, "n_uncovered": …, "uncovered": […]}`` with plain Python numbers."""
        return {**_plain(self.overall), "per_class": [_plain(row) for row in self.per_class],
                "n_uncovered": int((~self.prdc.real_recalled).sum()),
                "uncovered": [_plain(row) for row in self.uncovered]}


def uncovered_by_class(real_recalled: np.ndarray, real_labels: np.ndarray) -> list[dict]:
    """Coverage holes per class: real points outside every synthetic sample's k-NN ball (``~real_recalled``).

    Returns ``{"class": c, "n_real": n_c, "uncovered": u_c, "share": u_c / n_c}`` for each class c of
    ``real_labels``, using the balls over all synthetic samples: the real images that no synthetic sample
    of any class comes near (the picture of "misses the outer edges of the distribution").
    """
    real_recalled = np.asarray(real_recalled, dtype=bool)
    real_labels = _check_labels(real_labels, real_recalled.shape[0], "real")
    rows = []
    for c in np.unique(real_labels):
        members = real_labels == c
        n_c, u_c = int(members.sum()), int((~real_recalled[members]).sum())
        rows.append({"class": int(c), "n_real": n_c, "uncovered": u_c, "share": u_c / n_c})
    return rows


def check_features(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a contiguous float64 (n, d) array; ``ValueError`` unless it is 2-D, non-empty and finite."""
    a = np.ascontiguousarray(array, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} features must be a 2-D array (n, d), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} features are empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} features contain NaN or infinite values")
    return a


def _check_pair(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = check_features(real, "real"), check_features(synthetic, "synthetic")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real features have d={x.shape[1]} but synthetic features have d={y.shape[1]}")
    return x, y


def _squared_distance_blocks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, D²)``: squared Euclidean distances of ``a[rows]`` to all of ``b``, (rows, len(b))."""
    a_sq = (a * a).sum(dim=1)  # (A,)
    b_sq = (b * b).sum(dim=1)  # (B,)
    step = max(1, _BLOCK_ENTRIES // b.shape[0])
    for start in range(0, a.shape[0], step):
        rows = slice(start, min(a.shape[0], start + step))
        d2 = torch.addmm(b_sq[None, :], a[rows], b.T, alpha=-2.0)  # (b, B): ‖b‖² − 2 a·b
        d2.add_(a_sq[rows, None]).clamp_(min=0.0)
        yield rows, d2


def _kth_neighbour_radii_sq(x: torch.Tensor, k: int) -> torch.Tensor:
    """``r_k(X_i, X)²`` for every row, the point itself excluded: (N,)."""
    radii = torch.empty(x.shape[0], dtype=x.dtype)
    for rows, d2 in _squared_distance_blocks(x, x):
        local = torch.arange(rows.stop - rows.start)
        d2[local, local + rows.start] = torch.inf  # exclude X_i itself (duplicates still count)
        radii[rows] = torch.topk(d2, k, dim=1, largest=False).values[:, -1]
    return radii


def compute_prdc(real: np.ndarray, synthetic: np.ndarray, k: int = 5) -> PRDCResult:
    """Precision, recall, density and coverage (Naeem et al. 2020) of real (N, d) vs synthetic (M, d)."""
    x, y = _check_pair(real, synthetic)
    n, m = x.shape[0], y.shape[0]
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k >= n:
        raise ValueError(f"k={k} needs more than k real samples, got N={n}")
    if k >= m:
        raise ValueError(f"k={k} needs more than k synthetic samples, got M={m}")
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    r_x2, r_y2 = _kth_neighbour_radii_sq(x_t, k), _kth_neighbour_radii_sq(y_t, k)  # (N,), (M,)
    counts = torch.zeros(m, dtype=torch.int64)  # real balls holding each synthetic point
    real_covered = torch.empty(n, dtype=torch.bool)
    real_recalled = torch.empty(n, dtype=torch.bool)
    for rows, d2 in _squared_distance_blocks(x_t, y_t):  # d2: (b, M)
        inside = d2 <= r_x2[rows, None]  # Y_j in the ball of X_i
        counts += inside.sum(dim=0)
        real_covered[rows] = inside.any(dim=1)  # min_j ‖X_i − Y_j‖ ≤ r_k(X_i)
        real_recalled[rows] = (d2 <= r_y2[None, :]).any(dim=1)
    counts, real_covered, real_recalled = counts.numpy(), real_covered.numpy(), real_recalled.numpy()
    in_manifold = counts > 0
    return PRDCResult(
        precision=float(in_manifold.mean()), recall=float(real_recalled.mean()),
        density=float(counts.sum() / (k * m)), coverage=float(real_covered.mean()), k=k,
        synthetic_in_manifold=in_manifold, real_covered=real_covered, real_recalled=real_recalled,
        synthetic_density=counts / k)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; tiny negative eigenvalues are clipped to 0."""
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to the features: ‖μ_X − μ_Y‖² + Tr(Σ_X + Σ_Y − 2(Σ_X Σ_Y)^{1/2}).

    ``Tr (Σ_X Σ_Y)^{1/2}`` is taken as ``Tr (Σ_X^{1/2} Σ_Y Σ_X^{1/2})^{1/2}``, a symmetric PSD form that
    stays real and finite for rank-deficient covariances (fewer samples than dimensions). The small
    d × d algebra runs on one thread: extra threads only add waiting, badly so when the cores are busy.
    """
    x, y = _check_pair(real, synthetic)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set, got {x.shape[0]} real "
                         f"and {y.shape[0]} synthetic")
    with threadpool_limits(limits=1):
        mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)  # (d,)
        cov_x = np.atleast_2d(np.cov(x, rowvar=False))  # (d, d), unbiased
        cov_y = np.atleast_2d(np.cov(y, rowvar=False))
        root_x = _sqrt_psd(cov_x)
        middle = root_x @ cov_y @ root_x
        trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
        value = np.sum((mu_x - mu_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2.0 * trace_sqrt
    return max(float(value), 0.0)


def _summary(x: np.ndarray, y: np.ndarray, k: int) -> tuple[dict, PRDCResult]:
    result = compute_prdc(x, y, k)
    summary = {"precision": result.precision, "recall": result.recall, "density": result.density,
               "coverage": result.coverage, "frechet_distance": frechet_distance(x, y), "k": k,
               "n_real": x.shape[0], "n_synthetic": y.shape[0]}
    return summary, result


def _check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} labels must have shape ({n},), got {labels.shape}")
    return labels.astype(np.int64)


def distribution_metrics(real: np.ndarray, synthetic: np.ndarray, k: int = 5, real_labels: np.ndarray | None = None,
                         synthetic_labels: np.ndarray | None = None) -> DistributionMetrics:
    """PRDC and Fréchet distance over all samples and, when labels are given, per class.

    Classes are those present on both sides. A class with k or fewer samples on one side uses
    ``k = min(n_real, n_synthetic) − 1`` (reported in its ``k`` key); a class with fewer than 2 samples on
    either side is left out of ``per_class``.
    """
    x, y = _check_pair(real, synthetic)
    overall, result = _summary(x, y, k)
    if (real_labels is None) != (synthetic_labels is None):
        raise ValueError("give labels for both real and synthetic features, or for neither")
    per_class: list[dict] = []
    if real_labels is not None:
        lx = _check_labels(real_labels, x.shape[0], "real")
        ly = _check_labels(synthetic_labels, y.shape[0], "synthetic")
        for c in np.intersect1d(lx, ly):
            xc, yc = x[lx == c], y[ly == c]
            k_c = min(k, xc.shape[0] - 1, yc.shape[0] - 1)
            if k_c >= 1:
                per_class.append({"class": int(c), **_summary(xc, yc, k_c)[0]})
    uncovered = uncovered_by_class(result.real_recalled, real_labels) if real_labels is not None else []
    return DistributionMetrics(overall, per_class, result, uncovered)


def nearest_neighbours(query: np.ndarray, reference: np.ndarray, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` nearest reference rows of each query row: indices (Q, n) int64 and distances (Q, n), ascending."""
    q, r = check_features(query, "query"), check_features(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query features have d={q.shape[1]} but reference features have d={r.shape[1]}")
    if not 1 <= n <= r.shape[0]:
        raise ValueError(f"n must be between 1 and the number of reference rows ({r.shape[0]}), got {n}")
    indices = torch.empty((q.shape[0], n), dtype=torch.int64)
    distances = torch.empty((q.shape[0], n), dtype=torch.float64)
    for rows, d2 in _squared_distance_blocks(torch.from_numpy(q), torch.from_numpy(r)):  # d2: (b, R)
        nearest = torch.topk(d2, n, dim=1, largest=False, sorted=True)  # (b, n), ascending
        indices[rows], distances[rows] = nearest.indices, nearest.values.sqrt()
    return indices.numpy(), distances.numpy()

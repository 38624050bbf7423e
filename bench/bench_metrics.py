"""Time the feature-space core on random d=128 features: PRDC (ours vs the ``prdc`` package), Fréchet distance
and the projections (PCA, t-SNE, UMAP cold and warm), all measured in this one run.

Run from the repository root with genreg installed (``pip install -r requirements.txt`` installs it editable):
``python bench/bench_metrics.py`` (2k+2k and 5k+5k) or ``python bench/bench_metrics.py --quick`` (500+500, 1k+1k).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable

import numpy as np
import prdc

from genreg_core.evaluation.metrics import compute_prdc, frechet_distance
from genreg_core.evaluation.projection import project

FEATURE_DIM = 128
FULL_SIZES = (2000, 5000)
QUICK_SIZES = (500, 1000)
TSNE_MAX = 2000  # t-SNE is timed only up to this many points per set


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, FEATURE_DIM)).astype(np.float32)
    synthetic = (rng.normal(size=(n, FEATURE_DIM)) * 1.1 + 0.1).astype(np.float32)
    return real, synthetic


def _reference_prdc(real: np.ndarray, synthetic: np.ndarray) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        prdc.compute_prdc(real, synthetic, nearest_k=5)


def bench_size(n: int, seed: int, umap_cold: bool) -> list[tuple[str, float]]:
    """(step, seconds) rows for n real + n synthetic features; fresh data per projection so no cache hits.

    With ``umap_cold`` the first UMAP call of the process (import + numba compilation) is timed too.
    """
    real, synthetic = _features(n, seed)
    rows = [("prdc (ours)", _timed(lambda: compute_prdc(real, synthetic, k=5))),
            ("prdc (prdc package)", _timed(lambda: _reference_prdc(real, synthetic))),
            ("frechet_distance", _timed(lambda: frechet_distance(real, synthetic))),
            ("pca fit_real", _timed(lambda: project(*_features(n, seed + 1), "pca", "fit_real")))]
    if n <= TSNE_MAX:
        rows.append(("tsne union", _timed(lambda: project(*_features(n, seed + 2), "tsne", "union"))))
    if umap_cold:
        rows.append(("umap fit_real (cold)", _timed(lambda: project(*_features(n, seed + 3), "umap", "fit_real"))))
    rows.append(("umap fit_real (warm)", _timed(lambda: project(*_features(n, seed + 4), "umap", "fit_real"))))
    rows.append(("umap again (cached)", _timed(lambda: project(*_features(n, seed + 4), "umap", "fit_real"))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"use {QUICK_SIZES} points per set")
    sizes = QUICK_SIZES if parser.parse_args().quick else FULL_SIZES
    compute_prdc(*_features(50, 0), k=5)  # warm up torch's thread pool
    print(f"{'points':>12}  {'step':<22}{'seconds':>9}")
    ratios = []
    for i, n in enumerate(sizes):
        rows = bench_size(n, seed=10 * i, umap_cold=i == 0)
        for step, seconds in rows:
            print(f"{f'{n}+{n}':>12}  {step:<22}{seconds:>9.3f}", flush=True)
        timings = dict(rows)
        ratios.append(f"{n}+{n}: {timings['prdc (ours)'] / timings['prdc (prdc package)']:.2f}")
    print("\nPRDC time ours / prdc package: " + ", ".join(ratios))


if __name__ == "__main__":
    main()

"""2-D / 3-D projections of feature sets (PCA, t-SNE, UMAP) for the real-vs-synthetic feature-space view.

UMAP is McInnes et al. 2018, "UMAP: Uniform Manifold Approximation and Projection"; t-SNE is van der
Maaten & Hinton 2008, "Visualizing Data using t-SNE". umap-learn is imported only when first used
(about 12 s on 2 cores for numba), with numba's cache kept under ``genreg_home() / "numba"``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.manifold import TSNE

from genreg_core.evaluation.metrics import check_features
from genreg_core.lru import LRUCache

ProjectionMethod = Literal["umap", "pca", "tsne"]
ProjectionMode = Literal["fit_real", "union"]
METHODS = ("umap", "pca", "tsne")
MODES = ("fit_real", "union")
CACHE_SIZE = 16  # projections kept in memory, least recently used dropped first


def _import_umap():
    """``umap.UMAP``, imported on first use with a persistent numba cache (unless NUMBA_CACHE_DIR is set)."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        from genreg_core.paths import genreg_home

        cache_dir = genreg_home() / "numba"
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    from umap import UMAP

    return UMAP


def warm_up_umap() -> threading.Thread:
    """Import umap-learn and JIT-compile its kernels on a tiny fit in a background thread.

    A server starts this once, so the first UMAP a user asks for does not pay numba's compilation
    (about 12 s for the import and 8 s for the first fit on 2 cores, measured).
    """
    def work() -> None:
        x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
        Projector("umap", 2, random_state=0, n_epochs=10).fit(x).transform(x[:8])

    thread = threading.Thread(target=work, name="umap-warm-up", daemon=False)  # exit waits: no abort mid-compile
    thread.start()
    return thread


class Projector:
    """Maps features (n, d) to (n, n_components) with PCA, t-SNE or UMAP, in scikit-learn style.

    PCA and UMAP can ``transform`` new points into a fitted frame; t-SNE cannot (fit on the union).
    """

    def __init__(self, method: ProjectionMethod = "pca", n_components: int = 2, random_state: int | None = 0,
                 n_neighbors: int = 15, min_dist: float = 0.1, perplexity: float = 30.0, n_epochs: int | None = None):
        self.method = method  # pca | tsne | umap
        self.n_components = n_components  # 2 or 3
        self.random_state = random_state  # seed of t-SNE / UMAP (a seeded UMAP runs on one thread)
        self.n_neighbors = n_neighbors  # UMAP neighbourhood size, clipped to n − 1
        self.min_dist = min_dist  # UMAP minimum distance between embedded points
        self.perplexity = perplexity  # t-SNE perplexity, clipped below n
        self.n_epochs = n_epochs  # UMAP optimisation epochs; None = umap-learn's default, fewer is faster

    def _validate(self, n_samples: int, n_features: int) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components must be 2 or 3, got {self.n_components!r}")
        if n_features < self.n_components:
            raise ValueError(f"cannot project {n_features}-dimensional features to {self.n_components} dimensions")
        if n_samples < self.n_components + 2:
            raise ValueError(f"a {self.n_components}-D projection needs at least {self.n_components + 2} samples, "
                             f"got {n_samples}")

    def fit(self, X: np.ndarray) -> Projector:
        """Fit on ``X`` (n, d); the embedding of ``X`` is ``embedding_`` (n, n_components)."""
        x = check_features(X, "input")
        self._validate(*x.shape)
        n = x.shape[0]
        if self.method == "pca":
            self.model_ = PCA(self.n_components, random_state=self.random_state).fit(x)
            self.embedding_ = self.model_.transform(x)
        elif self.method == "tsne":
            self.model_ = TSNE(self.n_components, perplexity=min(self.perplexity, n - 1.0), init="pca",
                               random_state=self.random_state)
            self.embedding_ = self.model_.fit_transform(x)
        else:
            umap_cls = _import_umap()
            self.model_ = umap_cls(n_neighbors=min(self.n_neighbors, n - 1), n_components=self.n_components,
                                   min_dist=self.min_dist, n_epochs=self.n_epochs, random_state=self.random_state,
                                   n_jobs=1 if self.random_state is not None else -1)
            self.embedding_ = np.asarray(self.model_.fit_transform(x.astype(np.float32)), dtype=np.float64)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Map new points (m, d) into the fitted frame: (m, n_components). PCA and UMAP only."""
        if not hasattr(self, "model_"):
            raise NotFittedError("this Projector is not fitted yet; call fit first")
        if self.method == "tsne":
            raise ValueError("t-SNE cannot map new points into a fitted frame; fit on real and synthetic "
                             "together (mode 'union')")
        x = check_features(X, "input")
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"fitted on d={self.n_features_in_} features but got d={x.shape[1]}")
        if self.method == "pca":
            return self.model_.transform(x)
        return np.asarray(self.model_.transform(x.astype(np.float32)), dtype=np.float64)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """``fit(X).embedding_``."""
        return self.fit(X).embedding_


@dataclass
class ProjectionResult:
    """Real and synthetic points in one low-dimensional frame (arrays are read-only: results are cached)."""

    real: np.ndarray  # (N, n_components)
    synthetic: np.ndarray  # (M, n_components)
    method: ProjectionMethod
    mode: ProjectionMode  # fit_real: frame fitted on real only; union: fitted on both


_cache = LRUCache(CACHE_SIZE)


def _cache_key(real: np.ndarray, synthetic: np.ndarray, params: tuple) -> str:
    digest = hashlib.sha256(repr(params).encode())
    for array in (real, synthetic):
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def project(real: np.ndarray, synthetic: np.ndarray, method: ProjectionMethod = "pca",
            mode: ProjectionMode = "fit_real", n_components: int = 2, random_state: int | None = 0,
            n_epochs: int | None = None, on_progress: Callable[[str], None] | None = None) -> ProjectionResult:
    """Project real (N, d) and synthetic (M, d) features into one frame; cached in-process by content.

    ``fit_real`` fits on the real features and maps the synthetic ones into that frame (PCA, UMAP);
    ``union`` fits on both together (any method, the only choice for t-SNE).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if method == "tsne" and mode == "fit_real":
        raise ValueError("t-SNE cannot map synthetic points into a frame fitted on real ones; use mode 'union'")
    x, y = check_features(real, "real"), check_features(synthetic, "synthetic")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"real features have d={x.shape[1]} but synthetic features have d={y.shape[1]}")
    key = _cache_key(x, y, (method, mode, n_components, random_state, n_epochs))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    notify = on_progress or (lambda message: None)
    if method == "umap" and "umap" not in sys.modules:
        notify("loading umap-learn (the first time takes a while)")
    projector = Projector(method, n_components, random_state, n_epochs=n_epochs)
    if mode == "fit_real":
        notify(f"fitting {method} on {x.shape[0]} real points")
        real_2d = projector.fit_transform(x)
        notify(f"mapping {y.shape[0]} synthetic points")
        synthetic_2d = projector.transform(y)
    else:
        notify(f"fitting {method} on {x.shape[0] + y.shape[0]} real and synthetic points")
        both = projector.fit_transform(np.concatenate([x, y]))  # (N + M, n_components)
        real_2d, synthetic_2d = both[: x.shape[0]], both[x.shape[0]:]
    result = ProjectionResult(_read_only(real_2d), _read_only(synthetic_2d), method, mode)
    _cache.put(key, result)
    return result

import time

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness

from genreg_core.evaluation.projection import ProjectionResult, Projector, project


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Five clusters in 32-D: 200 'real' and 120 'synthetic' points from the same centres."""
    x, _ = make_blobs(320, 32, centers=5, cluster_std=2.0, random_state=0)
    return x[:200], x[200:]


@pytest.mark.parametrize("n_components", [2, 3])
def test_pca_shapes(blobs, n_components):
    real, synthetic = blobs
    projector = Projector("pca", n_components=n_components).fit(real)
    assert projector.embedding_.shape == (200, n_components)
    assert projector.transform(synthetic).shape == (120, n_components)
    result = project(real, synthetic, "pca", "union", n_components=n_components)
    assert result.real.shape == (200, n_components) and result.synthetic.shape == (120, n_components)


def test_fit_real_matches_transform(blobs):
    real, synthetic = blobs
    result = project(real, synthetic, "pca", "fit_real")
    projector = Projector("pca").fit(real)
    np.testing.assert_allclose(result.real, projector.embedding_)
    np.testing.assert_allclose(result.synthetic, projector.transform(synthetic))
    np.testing.assert_allclose(projector.transform(real), projector.embedding_, atol=1e-10)


def test_pca_and_tsne_preserve_neighbourhoods(blobs):
    real, _ = blobs
    for method in ("pca", "tsne"):
        embedding = Projector(method).fit_transform(real)
        assert np.isfinite(embedding).all()
        assert trustworthiness(real, embedding, n_neighbors=5) >= 0.8, method


def test_tsne_cannot_transform(blobs):
    real, synthetic = blobs
    projector = Projector("tsne", perplexity=500.0).fit(real[:60])  # perplexity is clipped below n
    assert projector.embedding_.shape == (60, 2)
    with pytest.raises(ValueError, match="union"):
        projector.transform(synthetic)
    with pytest.raises(ValueError, match="union"):
        project(real, synthetic, "tsne", "fit_real")


def test_bad_options_raise(blobs):
    real, synthetic = blobs
    with pytest.raises(ValueError, match="unknown method 'lda'"):
        Projector("lda").fit(real)
    with pytest.raises(ValueError, match="unknown method"):
        project(real, synthetic, "lda")
    with pytest.raises(ValueError, match="unknown mode"):
        project(real, synthetic, "pca", "both")
    with pytest.raises(ValueError, match="n_components"):
        Projector("pca", n_components=4).fit(real)
    with pytest.raises(ValueError, match="not fitted"):
        Projector("pca").transform(real)


def test_projection_is_cached_by_content(blobs):
    real, synthetic = blobs
    messages: list[str] = []
    first = project(real, synthetic, "pca", "union", random_state=1, on_progress=messages.append)
    assert isinstance(first, ProjectionResult) and messages
    start = time.perf_counter()
    again = project(real.copy(), synthetic.copy(), "pca", "union", random_state=1, on_progress=messages.append)
    assert again is first and time.perf_counter() - start < 0.5
    assert len(messages) == 1  # the cached call reports nothing
    assert project(real, synthetic, "pca", "fit_real", random_state=1) is not first
    with pytest.raises(ValueError):
        first.real[0, 0] = 1.0  # cached arrays are read-only


def test_umap_fit_real_and_union():
    """The one UMAP test (importing umap-learn and compiling numba code is slow)."""
    x, _ = make_blobs(300, 16, centers=3, cluster_std=3.0, random_state=1)
    real, synthetic = x[:200], x[200:]
    fitted = project(real, synthetic, "umap", "fit_real", n_epochs=100)
    assert fitted.real.shape == (200, 2) and fitted.synthetic.shape == (100, 2)
    assert np.isfinite(fitted.synthetic).all()
    assert trustworthiness(real, fitted.real, n_neighbors=5) >= 0.85
    union = project(real, synthetic, "umap", "union", n_epochs=100)
    assert union.real.shape == (200, 2) and union.synthetic.shape == (100, 2)
    assert trustworthiness(x, np.concatenate([union.real, union.synthetic]), n_neighbors=5) >= 0.85

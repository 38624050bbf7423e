import numpy as np
import pytest

from genreg_core.analysis.feature_space import (
    FeatureSpaceConfig,
    compare_sets,
    compute_feature_space,
    embedding_rows,
    nearest_training_images,
)
from genreg_core.config import SamplerConfig
from genreg_core.imaging import make_grid


@pytest.fixture(scope="module")
def lab():
    from genreg_core.lab import open_lab

    return open_lab()


FAST = SamplerConfig(n_steps=3)


def test_real_vs_itself_is_perfect(lab):
    ids = lab.split.train[:60]
    result = compare_sets(lab, ids, lab.dataset.images[ids], lab.dataset.labels[ids], k=3)
    m = result.metrics.overall
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert m["frechet_distance"] < 1e-3


def test_generate_source_shapes_and_flags(lab):
    config = FeatureSpaceConfig(source="generate", per_class=6, k=3, sampler=FAST)
    result = compute_feature_space(lab, config)
    assert result.real_features.shape == (60, lab.extractor.feature_dim)
    assert result.synthetic_features.shape == (60, lab.extractor.feature_dim)
    assert sorted(np.bincount(result.real_labels)) == [6] * 10
    assert result.metrics.prdc.synthetic_in_manifold.shape == (60,)
    assert [row["class"] for row in result.metrics.per_class] == list(range(10))
    rows = embedding_rows(result, np.zeros((60, 2)), np.ones((60, 2)), lab.dataset.class_names)
    assert len(rows) == 120 and rows[0]["source"] == "real" and rows[-1]["source"] == "synthetic"
    assert {"x", "y", "covered", "in_real_manifold", "class"} <= set(rows[0])


def test_reconstruct_source_at_t0_matches_real(lab):
    config = FeatureSpaceConfig(source="reconstruct", per_class=5, t=0, k=3, sampler=FAST)
    result = compute_feature_space(lab, config)
    np.testing.assert_allclose(result.synthetic_features, result.real_features, atol=1e-5)
    assert result.metrics.overall["coverage"] == 1.0


def test_folder_source_and_bad_folder(lab, tmp_path):
    from PIL import Image

    for name in ("3", "7"):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(make_grid(lab.dataset.images[lab.dataset.labels == int(name)][i:i + 1], 1, pad=0)).save(
                tmp_path / name / f"{i}.png")
    result = compute_feature_space(lab, FeatureSpaceConfig(source="folder", folder=str(tmp_path), per_class=5, k=2))
    assert set(result.synthetic_labels.tolist()) == {3, 7}
    (tmp_path / "cat").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "cat" / "a.png")
    with pytest.raises(ValueError, match="not classes of the dataset"):
        compute_feature_space(lab, FeatureSpaceConfig(source="folder", folder=str(tmp_path), per_class=5, k=2))


def test_nearest_training_images_finds_exact_copies(lab):
    ids = lab.split.train[[3, 50]]
    result = compare_sets(lab, ids, lab.dataset.images[ids], lab.dataset.labels[ids], k=1)
    idx, dist = nearest_training_images(lab, result.synthetic_features, n=3)
    assert idx[:, 0].tolist() == ids.tolist()
    assert np.all(dist[:, 0] < 1e-4) and np.all(np.diff(dist, axis=1) >= 0)


def test_mgr_snapshots_source(lab, monkeypatch):
    import torch

    from genreg_core.analysis.feature_space import meta_selected_images

    snaps = [{"sample_images": lab.dataset.images[i * 4:(i + 1) * 4], "sample_classes": lab.dataset.labels[i * 4:
                                                                                                         (i + 1) * 4]}
             for i in range(3)] + [{"mu": torch.zeros(2, 2)}]
    images, labels = meta_selected_images(snaps)
    assert images.shape == (12, 1, 16, 16) and labels.tolist() == lab.dataset.labels[:12].tolist()
    with pytest.raises(ValueError, match="no MGR samples"):
        meta_selected_images([{"mu": torch.zeros(2, 2)}])
    monkeypatch.setattr("genreg_core.runs.store.RunStore.load_snapshots", lambda self, run_id: snaps)
    result = compute_feature_space(lab, FeatureSpaceConfig(source="mgr", run_id="abc", per_class=5, k=2))
    assert len(result.synthetic_labels) == 12
    with pytest.raises(ValueError, match="needs the id"):
        compute_feature_space(lab, FeatureSpaceConfig(source="mgr", per_class=5, k=2))

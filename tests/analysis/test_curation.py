import contextlib
import io
import json
import zipfile

import numpy as np
import prdc
import pytest
import scipy.linalg

from genreg_core.analysis.curation import (
    CurateConfig,
    CurationFilter,
    candidates_of,
    curate,
    curation_mask,
    describe,
    export_folder,
    export_zip,
    generator_hash,
    region_metrics,
    uncurated_mask,
)
from genreg_core.analysis.feature_space import FeatureSpaceConfig, compute_feature_space, folder_images
from genreg_core.config import SamplerConfig
from genreg_core.data.datasets import load_image_folder

FAST = SamplerConfig(n_steps=3)


@pytest.fixture(scope="module")
def lab():
    from genreg_core.lab import open_lab

    return open_lab()


@pytest.fixture(scope="module")
def result(lab):
    return compute_feature_space(lab, FeatureSpaceConfig(per_class=8, k=3, sampler=FAST))


def _reference_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root (as in pytorch-fid)."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(cov_x @ cov_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * root))


def test_region_metrics_match_prdc_on_the_same_subsets(lab, result):
    rng = np.random.default_rng(0)
    real_ids = np.sort(rng.choice(len(result.real_labels), 40, replace=False))
    synth_ids = np.sort(rng.choice(len(result.synthetic_labels), 30, replace=False))
    region = region_metrics(result, real_ids, synth_ids, k=4, n_classes=lab.n_classes)
    x, y = result.real_features[real_ids], result.synthetic_features[synth_ids]
    with contextlib.redirect_stdout(io.StringIO()):
        ref = prdc.compute_prdc(x, y, 4)
    for key in ("precision", "recall", "density", "coverage"):
        assert region.metrics[key] == pytest.approx(ref[key], abs=1e-9), key
    # the features are low-rank relative to 30 samples: compare the Fréchet distance with a loose tolerance
    assert region.metrics["frechet_distance"] == pytest.approx(_reference_frechet(x, y), rel=1e-3, abs=1e-3)
    assert region.notice is None and (region.n_real, region.n_synthetic) == (40, 30)
    expected = np.bincount(result.real_labels[real_ids], minlength=10)
    assert {row["class"]: row["real"] for row in region.class_mix} == {c: int(n) for c, n in enumerate(expected) if n
                                                                       or np.any(result.synthetic_labels[synth_ids]
                                                                                 == c)}
    assert sum(row["synthetic"] for row in region.class_mix) == 30


def test_region_with_too_few_points_gives_a_notice(lab, result):
    region = region_metrics(result, [0, 1, 2], list(range(20)), k=3, n_classes=lab.n_classes)
    assert region.metrics is None
    assert "3 real points" in region.notice and "k = 3" in region.notice
    assert "synthetic" not in region.notice.split("has")[1].split(";")[0]


def test_filters_on_constructed_flags():
    flags = np.array([True, True, False, False, True, False])
    labels = np.array([0, 1, 0, 1, 2, 2])
    dist = np.array([0.1, 2.0, 0.5, 3.0, 1.0, 0.05])
    influence = np.array([-1.0, 0.5, -0.2, 0.0, 0.3, -3.0])
    mask = lambda **kw: curation_mask(flags, labels, dist, CurationFilter(**kw), influence).tolist()  # noqa: E731
    assert mask() == [True] * 6
    assert mask(keep="inside") == [True, True, False, False, True, False]
    assert mask(keep="outside") == [False, False, True, True, False, True]
    assert mask(classes=(0, 2)) == [True, False, True, False, True, True]
    assert mask(min_nn_distance=0.2) == [False, True, True, True, True, False]
    assert mask(max_nn_distance=1.0) == [True, False, True, False, True, True]
    assert mask(max_influence=0.0) == [True, False, True, True, False, True]
    assert mask(selection=(1, 2, 5)) == [False, True, True, False, False, True]
    # combined: outside, classes 0 or 2, not a near-copy, lowers the validation loss
    assert mask(keep="outside", classes=(0, 2), min_nn_distance=0.2, max_influence=0.0) == [
        False, False, True, False, False, False]
    with pytest.raises(ValueError, match="influence"):
        curation_mask(flags, labels, dist, CurationFilter(max_influence=0.0))
    with pytest.raises(ValueError, match="unknown keep"):
        curation_mask(flags, labels, dist, CurationFilter(keep="maybe"))
    with pytest.raises(ValueError, match="selection"):
        curation_mask(flags, labels, dist, CurationFilter(selection=(6,)))


def test_uncurated_control_has_the_same_size():
    keep = np.array([True, False, True, False, False, True, False])
    control = uncurated_mask(keep, seed=1)
    assert control.sum() == keep.sum() and control.dtype == bool


def test_export_round_trip(lab, tmp_path):
    config = CurateConfig(per_class=6, k=3, sampler=FAST, rules=CurationFilter(classes=(0, 3, 7)))
    candidates, keep, record = curate(lab, config)
    assert set(np.unique(candidates.labels[keep])) == {0, 3, 7}
    manifest = export_folder(tmp_path / "out", candidates, keep, record, lab.dataset.class_names)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk == manifest
    for name, count in on_disk["counts"].items():
        assert len(list((tmp_path / "out" / name).glob("*.png"))) == count
    assert sum(on_disk["counts"].values()) == on_disk["n_kept"] == int(keep.sum()) == len(on_disk["images"])
    assert on_disk["generator"]["sha256"] == generator_hash(lab.generator)
    assert on_disk["seed"] == 0 and on_disk["filters"]["classes"] == [0, 3, 7]
    # it loads back as a dataset through the image-folder path, with the pixels the candidates had
    ds = load_image_folder(tmp_path / "out", lab.dataset.image_size, lab.dataset.channels)
    assert ds.class_names == ["0", "3", "7"] and len(ds) == int(keep.sum())
    images, labels = folder_images(lab, str(tmp_path / "out"))
    order = [e["index"] for e in sorted(on_disk["images"], key=lambda e: e["file"])]
    assert labels.tolist() == candidates.labels[order].tolist()
    assert np.abs(images.numpy() - candidates.images[order].numpy()).max() <= 1 / 127.5 + 1e-6  # uint8 rounding
    entry = on_disk["images"][0]
    assert entry["nn_distance"] == pytest.approx(float(candidates.nn_distance[entry["index"]]))
    with pytest.raises(ValueError, match="not an empty folder"):
        export_folder(tmp_path / "out", candidates, keep, record, lab.dataset.class_names)


def test_zip_export_matches_the_folder(lab, result, tmp_path):
    candidates = candidates_of(lab, result)
    keep = curation_mask(candidates.in_manifold, candidates.labels, candidates.nn_distance, CurationFilter())
    record = describe(lab, FeatureSpaceConfig(per_class=8, k=3, sampler=FAST), CurationFilter())
    data = export_zip(candidates, keep, record, lab.dataset.class_names)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(tmp_path)
    manifest = json.loads((tmp_path / "curated" / "manifest.json").read_text())
    assert manifest["n_kept"] == len(candidates.labels) == len(list((tmp_path / "curated").glob("*/*.png")))
    with pytest.raises(ValueError, match="keep none"):
        export_zip(candidates, np.zeros_like(keep), record, lab.dataset.class_names)

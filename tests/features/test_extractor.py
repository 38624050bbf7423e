import numpy as np
import pytest
import torch

from genreg_core.config import FeatureConfig
from genreg_core.features.extractor import (
    DEFAULT_FEATURES_DIR,
    accuracy,
    extract_features,
    get_feature_extractor,
    load_feature_extractor,
    save_feature_extractor,
    train_feature_extractor,
)

TINY = FeatureConfig(width=8, feature_dim=16, epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def tiny_extractor(digits):
    return train_feature_extractor(digits.images[:256], digits.labels[:256], 10, TINY)


def test_shipped_extractor_reaches_target_accuracy(digits, digits_split):
    extractor = load_feature_extractor()
    acc = accuracy(extractor, digits.images[digits_split.test], digits.labels[digits_split.test])
    assert acc >= 0.97
    assert abs(acc - extractor.test_accuracy) < 1e-9


def test_extract_features_shape_and_determinism(tiny_extractor, digits):
    a = extract_features(tiny_extractor, digits.images[:50], batch_size=16)
    b = extract_features(tiny_extractor, digits.images[:50], batch_size=50)
    assert a.shape == (50, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_is_seeded(digits):
    a = train_feature_extractor(digits.images[:128], digits.labels[:128], 10, TINY)
    b = train_feature_extractor(digits.images[:128], digits.labels[:128], 10, TINY)
    x = digits.images[:8]
    np.testing.assert_allclose(extract_features(a, x), extract_features(b, x), rtol=1e-5, atol=1e-5)


def test_save_load_roundtrip_and_corrupt_file(tiny_extractor, digits, tmp_path):
    folder = save_feature_extractor(tiny_extractor, tmp_path / "fx")
    loaded = load_feature_extractor(folder)
    x = digits.images[:8]
    np.testing.assert_allclose(extract_features(loaded, x), extract_features(tiny_extractor, x), atol=1e-6)
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="cannot load feature extractor"):
        load_feature_extractor(folder)


def test_disk_cache_trains_once(digits, tmp_path):
    calls = []
    x, y = digits.images[:128], digits.labels[:128]
    first = get_feature_extractor(x, y, 10, TINY, tmp_path, on_epoch=lambda e, m: calls.append(e))
    second = get_feature_extractor(x, y, 10, TINY, tmp_path, on_epoch=lambda e, m: calls.append(e))
    assert calls == [1, 2]
    torch.testing.assert_close(first.model.head.weight, second.model.head.weight)


def test_shipped_folder_is_safetensors_only():
    files = {p.name for p in DEFAULT_FEATURES_DIR.iterdir()}
    assert files == {"model.safetensors", "config.json"}

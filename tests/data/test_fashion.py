"""The shipped Fashion-MNIST subset: stratified, disjoint, hashed as recorded; the loader needs no torchvision."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreg_core.config import DataConfig
from genreg_core.data.datasets import load_dataset
from genreg_core.data.fashion import (
    CLASS_NAMES,
    DEBIAN_ROOT,
    PROVENANCE_FILE,
    SUBSET_FILE,
    build_subset,
    load_fashion_subset,
    read_fashion_idx,
)


@pytest.fixture(scope="module")
def subset():
    return load_fashion_subset()


def test_subset_is_stratified(subset):
    provenance = json.loads(PROVENANCE_FILE.read_text())
    pool_counts = np.bincount(subset["pool_labels"], minlength=10)
    test_counts = np.bincount(subset["test_labels"], minlength=10)
    assert pool_counts.tolist() == [provenance["pool_per_class"]] * 10
    assert test_counts.tolist() == [provenance["test_per_class"]] * 10
    assert subset["pool_images"].shape == (10 * provenance["pool_per_class"], 28, 28)
    assert subset["pool_images"].dtype == np.uint8


def test_pool_and_test_are_disjoint(subset):
    # different source files (training vs test) and, checked here, no image appears in both
    pool = {hashlib.sha1(image.tobytes()).digest() for image in subset["pool_images"]}
    test = {hashlib.sha1(image.tobytes()).digest() for image in subset["test_images"]}
    assert not pool & test
    assert len(np.unique(subset["pool_index"])) == len(subset["pool_index"])
    assert subset["pool_index"].max() < 60_000 and subset["test_index"].max() < 10_000


def test_hash_and_provenance_match_the_shipped_file():
    provenance = json.loads(PROVENANCE_FILE.read_text())
    assert hashlib.sha256(SUBSET_FILE.read_bytes()).hexdigest() == provenance["subset_sha256"]
    assert provenance["class_names"] == CLASS_NAMES
    assert "Zalando" in provenance["copyright"] and "MIT" in provenance["licence"]
    licence = (SUBSET_FILE.parent / "LICENSE").read_text()
    assert "MIT" in licence and "Zalando SE" in licence
    assert set(provenance["source_files"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


def _write_fake_fashion(root: Path, n_train_per_class: int, n_test_per_class: int) -> None:
    """Four gzip IDX files whose image i is filled with the value (i mod 250) and labelled i mod 10."""
    for part, per_class in (("train", n_train_per_class), ("t10k", n_test_per_class)):
        n = 10 * per_class
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.repeat((np.arange(n) % 250).astype(np.uint8), 28 * 28)
        header = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28)
        (root / f"{part}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
        (root / f"{part}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + labels.tobytes()))


def test_build_subset_is_reproducible_and_matches_the_sources(tmp_path):
    _write_fake_fashion(tmp_path, 8, 5)
    first = build_subset(tmp_path, tmp_path / "a", pool_per_class=3, test_per_class=2, seed=1)
    second = build_subset(tmp_path, tmp_path / "b", pool_per_class=3, test_per_class=2, seed=1)
    assert first["subset_sha256"] == second["subset_sha256"]
    built = load_fashion_subset(tmp_path / "a" / "subset.npz")
    assert np.bincount(built["pool_labels"]).tolist() == [3] * 10
    # each image is what the source file holds at the recorded index
    assert (built["pool_images"][:, 0, 0] == built["pool_index"] % 250).all()
    assert (built["pool_labels"] == built["pool_index"] % 10).all()
    assert (built["test_labels"] == built["test_index"] % 10).all()


def test_full_set_from_an_idx_folder(tmp_path):
    _write_fake_fashion(tmp_path, 4, 2)
    dataset = load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path)))
    assert dataset.images.shape == (40, 1, 28, 28) and dataset.held_out.images.shape == (20, 1, 28, 28)
    assert float(dataset.images[3].max()) == pytest.approx(3 / 255 * 2 - 1, abs=1e-6)
    assert dataset.class_names == CLASS_NAMES


def test_missing_idx_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*dataset-fashion-mnist"):
        read_fashion_idx(tmp_path, "train")


def test_default_is_the_subset_at_28(subset):
    dataset = load_dataset(DataConfig(name="fashion-mnist"))
    assert dataset.image_size == 28 and len(dataset) == len(subset["pool_labels"])
    assert len(dataset.held_out) == len(subset["test_labels"])
    expected = subset["pool_images"][7].astype(np.float32) / 255 * 2 - 1
    assert np.allclose(dataset.images[7, 0].numpy(), expected, atol=1e-6)


@pytest.mark.skipif(not Path(DEBIAN_ROOT, "train-images-idx3-ubyte.gz").exists(), reason="needs dataset-fashion-mnist")
def test_rebuilding_from_debian_files_gives_the_shipped_bytes(tmp_path):
    provenance = build_subset(DEBIAN_ROOT, tmp_path)
    assert provenance["subset_sha256"] == json.loads(PROVENANCE_FILE.read_text())["subset_sha256"]
    assert provenance["source_files"] == json.loads(PROVENANCE_FILE.read_text())["source_files"]


LOAD_WITHOUT_EXTRAS = r"""
import sys
sys.modules["torchvision"] = None  # import torchvision now raises ImportError
def refuse(event, args):
    if event == "open" and str(args[0]).startswith("/usr/share/datasets"):
        raise PermissionError(f"opened {args[0]}")
sys.addaudithook(refuse)
from genreg_core.config import DataConfig
from genreg_core.data.datasets import load_dataset
dataset = load_dataset(DataConfig(name="fashion-mnist"))
print(len(dataset), dataset.image_size, "torchvision" in sys.modules and sys.modules["torchvision"] is not None)
"""


def test_subset_loads_without_torchvision_or_debian_files():
    result = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_EXTRAS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5000", "28", "False"]

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genreg_core.config import DataConfig
from genreg_core.data.datasets import load_dataset, load_image_folder, per_class_subset, split_dataset


def test_digits_shape_range_and_labels(digits):
    assert digits.images.shape == (1797, 1, 16, 16)
    assert digits.images.dtype == torch.float32
    assert digits.images.min() >= -1 and digits.images.max() <= 1
    assert digits.images.min() == -1 and digits.images.max() > 0.9
    assert digits.labels.dtype == torch.int64
    assert sorted(digits.labels.unique().tolist()) == list(range(10))


def test_digits_image_size_is_configurable():
    ds = load_dataset(DataConfig(image_size=8))
    assert ds.images.shape[-2:] == (8, 8)


def test_split_is_stratified_disjoint_and_fixed_per_seed(digits):
    a = split_dataset(digits.labels, seed=0)
    b = split_dataset(digits.labels, seed=0)
    c = split_dataset(digits.labels, seed=1)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.train, c.train)
    all_idx = np.concatenate([a.train, a.val, a.test])
    assert len(np.unique(all_idx)) == len(all_idx) == len(digits)
    assert abs(len(a.test) / len(digits) - 0.2) < 0.01 and abs(len(a.val) / len(digits) - 0.2) < 0.01
    labels = digits.labels.numpy()
    overall = np.bincount(labels) / len(labels)
    for part in (a.train, a.val, a.test):
        share = np.bincount(labels[part], minlength=10) / len(part)
        assert np.abs(share - overall).max() < 0.01


@pytest.mark.parametrize("per_class", [5, 10, 25])
def test_per_class_subset_counts(digits, digits_split, per_class):
    labels = digits.labels.numpy()
    subset = per_class_subset(labels, digits_split.train, per_class, seed=3)
    assert np.all(np.bincount(labels[subset]) == per_class)
    assert set(subset) <= set(digits_split.train)
    np.testing.assert_array_equal(subset, per_class_subset(labels, digits_split.train, per_class, seed=3))


def test_per_class_subset_all_and_too_many(digits, digits_split):
    labels = digits.labels.numpy()
    np.testing.assert_array_equal(per_class_subset(labels, digits_split.train, None), digits_split.train)
    with pytest.raises(ValueError, match="fewer than per_class"):
        per_class_subset(labels, digits_split.train, 1000)


def _write(path, mode="L", size=(10, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (10, 200, 30)).save(path)


def test_image_folder_loads_grayscale_and_rgb(tmp_path):
    _write(tmp_path / "cat" / "a.png")
    _write(tmp_path / "cat" / "b.jpg")
    _write(tmp_path / "dog" / "c.png")
    ds = load_image_folder(tmp_path, image_size=16)
    assert ds.images.shape == (3, 1, 16, 16) and ds.class_names == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1]
    _write(tmp_path / "dog" / "d.png", mode="RGB")
    ds = load_image_folder(tmp_path, image_size=8)
    assert ds.images.shape == (4, 3, 8, 8)
    assert ds.images.min() >= -1 and ds.images.max() <= 1


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "nope")


def test_image_folder_without_class_folders(tmp_path):
    _write(tmp_path / "a.png")
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path)


def test_image_folder_single_class(tmp_path):
    _write(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match="at least 2"):
        load_image_folder(tmp_path)


def test_image_folder_empty_class(tmp_path):
    _write(tmp_path / "cat" / "a.png")
    (tmp_path / "dog").mkdir()
    with pytest.raises(ValueError, match=r"dog is empty"):
        load_image_folder(tmp_path)


def test_image_folder_non_image_file(tmp_path):
    _write(tmp_path / "cat" / "a.png")
    _write(tmp_path / "dog" / "b.png")
    (tmp_path / "dog" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        load_image_folder(tmp_path)


def test_image_folder_corrupt_image(tmp_path):
    _write(tmp_path / "cat" / "a.png")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset(DataConfig(name="imagenet"))


def test_uploaded_images_decode_and_bad_upload_is_named(tmp_path):
    import io

    from genreg_core.data.datasets import load_uploaded_images

    buffer = io.BytesIO()
    Image.new("L", (20, 20), 255).save(buffer, format="PNG")
    images = load_uploaded_images([("a.png", buffer.getvalue())], 16, 1)
    assert images.shape == (1, 1, 16, 16) and torch.allclose(images, torch.ones_like(images))
    with pytest.raises(ValueError, match="evil.png"):
        load_uploaded_images([("evil.png", b"not an image")], 16, 1)


def _two_classes(root, n=2):
    for c in "ab":
        for i in range(n):
            _write(root / c / f"{i}.png", size=(8, 8))
    return root


@pytest.mark.parametrize("name", ["e.png", "e.jpg"])
@pytest.mark.parametrize("fmt", ["EPS", "TIFF", "PDF"])
def test_other_formats_behind_image_names_are_refused_unopened(tmp_path, monkeypatch, fmt, name):
    from PIL import Image as PILImage

    from tests.hostile_files import foreign_image

    root = _two_classes(tmp_path / "data")
    (root / "a" / name).write_bytes(foreign_image(fmt))
    PILImage.init()
    tried = []
    for key, (_factory, accept) in list(PILImage.OPEN.items()):
        if key not in ("PNG", "JPEG"):
            monkeypatch.setitem(PILImage.OPEN, key, (lambda *a, k=key: tried.append(k), accept))
    with pytest.raises(ValueError, match=rf"{name} is not a PNG or JPEG file"):
        load_image_folder(root, 8)
    assert tried == []  # no other decoder (Ghostscript's EPS above all) was ever called


def test_symlinked_class_folders_and_files(tmp_path, monkeypatch):
    from genreg_core.data.datasets import scan_image_folder

    outside = _two_classes(tmp_path / "elsewhere")
    root = _two_classes(tmp_path / "data")
    (root / "c").symlink_to(outside / "a")
    with pytest.raises(ValueError, match=r"data/c is a symbolic link; .*GENREG_FOLLOW_LINKS=1"):
        scan_image_folder(root)
    with pytest.raises(ValueError, match=r"data/c is a symbolic link to .*elsewhere/a, outside the data folder"):
        scan_image_folder(root, follow_links=True)
    (root / "c").unlink()
    (root / "p").symlink_to("/proc/self")
    with pytest.raises(ValueError, match="outside the data folder"):
        scan_image_folder(root, follow_links=True)
    (root / "p").unlink()
    (root / "a" / "out.png").symlink_to(outside / "a" / "0.png")
    with pytest.raises(ValueError, match="a/out.png is a symbolic link to .*outside"):
        scan_image_folder(root, follow_links=True)
    (root / "a" / "out.png").unlink()
    (root / "a" / "in.png").symlink_to(root / "b" / "0.png")  # inside: followed only when asked
    with pytest.raises(ValueError, match="a/in.png is a symbolic link"):
        scan_image_folder(root)
    monkeypatch.setenv("GENREG_FOLLOW_LINKS", "1")
    assert load_image_folder(root, 8).class_counts() == {"a": 3, "b": 2}


def test_fifo_folder_and_link_loop_named_png_are_errors(tmp_path, monkeypatch):
    import os

    root = _two_classes(tmp_path / "data")
    os.mkfifo(root / "a" / "f.png")
    with pytest.raises(ValueError, match="f.png is a special file"):
        load_image_folder(root, 8)  # and it returns: the FIFO was never opened
    (root / "a" / "f.png").unlink()
    (root / "a" / "x.png").mkdir()
    with pytest.raises(ValueError, match="x.png is a folder, not an image file"):
        load_image_folder(root, 8)
    (root / "a" / "x.png").rmdir()
    (root / "a" / "loop.png").symlink_to("loop.png")
    monkeypatch.setenv("GENREG_FOLLOW_LINKS", "1")
    with pytest.raises(ValueError, match="loop.png is a symbolic link that cannot be followed"):
        load_image_folder(root, 8)


def test_entries_not_read_are_listed_with_the_counts(tmp_path):
    root = _two_classes(tmp_path / "data", n=3)
    (root / ".DS_Store").write_bytes(b"x")
    (root / "a" / "._0.png").write_bytes(b"resource fork")
    (root / "stray.png").write_bytes(b"")
    (root / "b" / "nested").mkdir()
    ds = load_image_folder(root, 8)
    assert ds.class_counts() == {"a": 3, "b": 3} and len(ds) == 6
    skipped = {Path(e.path).name: e.reason for e in ds.skipped}
    assert set(skipped) == {".DS_Store", "._0.png", "stray.png", "nested"}
    assert "hidden" in skipped["._0.png"] and "beside the class folders" in skipped["stray.png"]

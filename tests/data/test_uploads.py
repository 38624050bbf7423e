"""Hostile uploads and images: every archive is generated here and goes through the real extraction function."""

import io
import struct
import zipfile

import numpy as np
import pytest

from genreg_core.data.datasets import load_image_folder
from genreg_core.data.uploads import UploadLimits, extract_zip
from tests.archives import folder_zip, make_zip, patch_headers, png, png_claiming, upload_at_once


def _left_behind(home) -> list[str]:
    uploads = home / "uploads"
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def test_valid_upload_is_unpacked_and_loads(tmp_path):
    root = extract_zip(folder_zip(), tmp_path)
    assert root.name == "digits" and sorted(p.name for p in root.iterdir()) == ["a", "b"]
    ds = load_image_folder(root, 8)
    assert ds.images.shape == (6, 1, 8, 8) and ds.class_names == ["a", "b"]
    assert extract_zip(folder_zip(), tmp_path) == root  # content-addressed: the same bytes, the same folder
    assert len(_left_behind(tmp_path)) == 1


def test_a_staging_folder_left_by_a_killed_upload_is_removed_by_the_next_one(tmp_path):
    import os
    import time

    uploads = tmp_path / "uploads"
    old, fresh = uploads / ".staging-killed", uploads / ".staging-running"
    for folder in (old, fresh):
        (folder / "digits" / "0").mkdir(parents=True)
        (folder / "digits" / "0" / "a.png").write_bytes(png())
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    extract_zip(folder_zip(), tmp_path)
    assert not old.exists() and fresh.is_dir()  # an upload still being written is left alone


def test_macos_resource_forks_are_skipped(tmp_path):
    data = make_zip({"a/0.png": png(), "b/0.png": png(), "__MACOSX/a/._0.png": b"junk", ".DS_Store": b"junk"})
    root = extract_zip(data, tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = make_zip({"a/zeros.png": bytes(64 * 2**20)})  # 64 MiB of zeros, about 64 KB compressed
    assert len(bomb) < 2**20
    with pytest.raises(ValueError, match="zip bomb"):
        extract_zip(bomb, tmp_path)
    with pytest.raises(ValueError, match="unpacks to 64 MB, more than the limit of 1 MB"):
        extract_zip(bomb, tmp_path, UploadLimits(max_total_bytes=2**20, max_ratio=10**9))
    assert _left_behind(tmp_path) == []


def test_total_size_is_capped_from_the_directory(tmp_path):
    rng = np.random.default_rng(0)
    data = make_zip({f"{c}/{i}.bin": rng.bytes(300_000) for c in "ab" for i in range(2)})  # 1.2 MB, incompressible
    with pytest.raises(ValueError, match="more than the limit of 1 MB"):
        extract_zip(data, tmp_path, UploadLimits(max_total_bytes=2**20))
    assert _left_behind(tmp_path) == []


def test_a_directory_that_lies_about_sizes_is_caught_while_streaming(tmp_path):
    rng = np.random.default_rng(1)
    honest = make_zip({"a/x.png": rng.bytes(2 * 2**20), "b/y.png": png()}, zipfile.ZIP_STORED)
    lying = patch_headers(honest, 22, struct.pack("<I", 1000))  # uncompressed size field: 1,000 bytes
    with pytest.raises(ValueError):
        extract_zip(lying, tmp_path, UploadLimits(max_total_bytes=2**20))
    assert _left_behind(tmp_path) == []


def test_member_count_is_capped(tmp_path):
    data = make_zip({f"{c}/{i}.png": png() for c in "ab" for i in range(5)})
    with pytest.raises(ValueError, match="10 files, more than the limit of 4"):
        extract_zip(data, tmp_path, UploadLimits(max_members=4))
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_huge_images_are_refused_from_their_header(tmp_path, side):
    data = make_zip({"a/0.png": png(), "b/huge.png": png_claiming(side, side)})
    message = r"image 'b/huge.png' in the upload is too large .*; the limit is 25,000,000 pixels"
    with pytest.raises(ValueError, match=message):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_huge_images_are_refused_when_loading_a_folder(tmp_path, side):
    for c in "ab":
        (tmp_path / c).mkdir()
        (tmp_path / c / "0.png").write_bytes(png())
    (tmp_path / "b" / "huge.png").write_bytes(png_claiming(side, side))
    with pytest.raises(ValueError, match=r"huge.png is too large .*; the limit is 25,000,000 pixels"):
        load_image_folder(tmp_path, 8, channels=1)
    with pytest.raises(ValueError, match="huge.png"):
        load_image_folder(tmp_path, 8)  # the channel probe reads the header too


def test_bad_crc_is_a_clear_error_and_leaves_nothing(tmp_path):
    payload = b"\x89PNG" + bytes(range(256)) * 8
    data = bytearray(make_zip({"a/0.png": png(), "b/0.bin": payload}, zipfile.ZIP_STORED))
    at = bytes(data).find(bytes(range(256)))
    data[at + 100] ^= 0xFF
    with pytest.raises(ValueError, match="not a readable zip file: Bad CRC-32"):
        extract_zip(bytes(data), tmp_path)
    assert _left_behind(tmp_path) == []


def test_encrypted_member_is_refused(tmp_path):
    data = patch_headers(make_zip({"a/0.png": png(), "b/0.png": png()}), 6, b"\x01")  # general purpose flag bit 0
    with pytest.raises(ValueError, match="is encrypted"):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


def test_unsupported_compression_is_refused(tmp_path):
    data = patch_headers(make_zip({"a/0.png": png(), "b/0.png": png()}), 8, struct.pack("<H", 99))
    with pytest.raises(ValueError, match="unsupported compression method"):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/abs/evil.png"])
def test_paths_that_escape_are_refused(tmp_path, name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/0.png", png())
        archive.writestr(zipfile.ZipInfo(name), png())
    with pytest.raises(ValueError, match="points outside the archive"):
        extract_zip(buffer.getvalue(), tmp_path)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04" + bytes(40)])
def test_not_a_zip_is_a_clear_error(tmp_path, data):
    with pytest.raises(ValueError, match="not a zip file"):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


def test_empty_zip_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no files"):
        extract_zip(make_zip({}), tmp_path)


def test_uploads_folder_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "uploads").write_text("in the way")
    with pytest.raises(ValueError, match="cannot store the upload"):
        extract_zip(folder_zip(), tmp_path)


def test_identical_uploads_at_once_all_succeed(tmp_path):
    results, errors = upload_at_once(folder_zip(n_per_class=20), tmp_path, 6)
    assert errors == [] and len(set(results)) == 1
    assert len(_left_behind(tmp_path)) == 1  # one folder, no staging folders
    assert len(load_image_folder(results[0], 8)) == 40


@pytest.mark.parametrize("fmt", ["EPS", "TIFF", "PDF"])
def test_other_formats_behind_image_names_in_a_zip_are_refused(tmp_path, fmt):
    from tests.hostile_files import foreign_image

    data = make_zip({"a/0.png": png(), "b/0.png": png(), "a/e.jpg": foreign_image(fmt)})
    with pytest.raises(ValueError, match=r"'a/e.jpg' in the upload is not a PNG or JPEG file"):
        extract_zip(data, tmp_path)
    assert not any((tmp_path / "uploads").iterdir())


def test_members_not_unpacked_are_reported(tmp_path):
    from genreg_core.data.uploads import unpack_upload

    data = make_zip({"a/0.png": png(), "b/0.png": png(), "__MACOSX/a/._0.png": b"junk", "a/.hidden.png": b"x"})
    for _ in range(2):  # the first upload and the cached one report the same
        upload = unpack_upload(data, tmp_path)
        assert sorted(e.path for e in upload.skipped) == ["__MACOSX/a/._0.png in the upload",
                                                          "a/.hidden.png in the upload"]

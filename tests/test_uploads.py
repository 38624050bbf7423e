"""Hostile uploads and images: every archive is generated here and goes through the real extraction function."""

import io
import struct
import threading
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from genreg_core.data import load_image_folder
from genreg_core.uploads import UploadLimits, extract_zip


def _png(size=(8, 8), mode="L", value=0) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels (its data is tiny): what a decoder sees first."""
    data = bytearray(_png((1, 1)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def _folder_zip(n_per_class=3, top="digits") -> bytes:
    return _zip({f"{top}/{c}/{i}.png": _png(value=40 * i) for c in ("a", "b") for i in range(n_per_class)})


def _left_behind(home) -> list[str]:
    uploads = home / "uploads"
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def _patch_headers(data: bytes, offset_in_header: int, value: bytes) -> bytes:
    """Overwrite a field at the same offset in every local header (PK\\3\\4) and, shifted, every central one."""
    out = bytearray(data)
    local, central = b"PK\x03\x04", b"PK\x01\x02"
    for sig, shift in ((local, 0), (central, 2)):  # central headers carry 2 more bytes before the shared fields
        start = out.find(sig)
        while start != -1:
            at = start + offset_in_header + shift
            out[at:at + len(value)] = value
            start = out.find(sig, start + 4)
    return bytes(out)


def test_valid_upload_is_unpacked_and_loads(tmp_path):
    root = extract_zip(_folder_zip(), tmp_path)
    assert root.name == "digits" and sorted(p.name for p in root.iterdir()) == ["a", "b"]
    ds = load_image_folder(root, 8)
    assert ds.images.shape == (6, 1, 8, 8) and ds.class_names == ["a", "b"]
    assert extract_zip(_folder_zip(), tmp_path) == root  # content-addressed: the same bytes, the same folder
    assert len(_left_behind(tmp_path)) == 1


def test_a_staging_folder_left_by_a_killed_upload_is_removed_by_the_next_one(tmp_path):
    import os
    import time

    uploads = tmp_path / "uploads"
    old, fresh = uploads / ".staging-killed", uploads / ".staging-running"
    for folder in (old, fresh):
        (folder / "digits" / "0").mkdir(parents=True)
        (folder / "digits" / "0" / "a.png").write_bytes(_png())
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    extract_zip(_folder_zip(), tmp_path)
    assert not old.exists() and fresh.is_dir()  # an upload still being written is left alone


def test_macos_resource_forks_are_skipped(tmp_path):
    data = _zip({"a/0.png": _png(), "b/0.png": _png(), "__MACOSX/a/._0.png": b"junk", ".DS_Store": b"junk"})
    root = extract_zip(data, tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["a", "b"]


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = _zip({"a/zeros.png": bytes(64 * 2**20)})  # 64 MiB of zeros, about 64 KB compressed
    assert len(bomb) < 2**20
    with pytest.raises(ValueError, match="zip bomb"):
        extract_zip(bomb, tmp_path)
    with pytest.raises(ValueError, match="unpacks to 64 MB, more than the limit of 1 MB"):
        extract_zip(bomb, tmp_path, UploadLimits(max_total_bytes=2**20, max_ratio=10**9))
    assert _left_behind(tmp_path) == []


def test_total_size_is_capped_from_the_directory(tmp_path):
    rng = np.random.default_rng(0)
    data = _zip({f"{c}/{i}.bin": rng.bytes(300_000) for c in "ab" for i in range(2)})  # 1.2 MB, incompressible
    with pytest.raises(ValueError, match="more than the limit of 1 MB"):
        extract_zip(data, tmp_path, UploadLimits(max_total_bytes=2**20))
    assert _left_behind(tmp_path) == []


def test_a_directory_that_lies_about_sizes_is_caught_while_streaming(tmp_path):
    rng = np.random.default_rng(1)
    honest = _zip({"a/x.png": rng.bytes(2 * 2**20), "b/y.png": _png()}, zipfile.ZIP_STORED)
    lying = _patch_headers(honest, 22, struct.pack("<I", 1000))  # uncompressed size field: 1,000 bytes
    with pytest.raises(ValueError):
        extract_zip(lying, tmp_path, UploadLimits(max_total_bytes=2**20))
    assert _left_behind(tmp_path) == []


def test_member_count_is_capped(tmp_path):
    data = _zip({f"{c}/{i}.png": _png() for c in "ab" for i in range(5)})
    with pytest.raises(ValueError, match="10 files, more than the limit of 4"):
        extract_zip(data, tmp_path, UploadLimits(max_members=4))
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_huge_images_are_refused_from_their_header(tmp_path, side):
    data = _zip({"a/0.png": _png(), "b/huge.png": _png_claiming(side, side)})
    message = r"image 'b/huge.png' in the upload is too large .*; the limit is 25,000,000 pixels"
    with pytest.raises(ValueError, match=message):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_huge_images_are_refused_when_loading_a_folder(tmp_path, side):
    for c in "ab":
        (tmp_path / c).mkdir()
        (tmp_path / c / "0.png").write_bytes(_png())
    (tmp_path / "b" / "huge.png").write_bytes(_png_claiming(side, side))
    with pytest.raises(ValueError, match=r"huge.png is too large .*; the limit is 25,000,000 pixels"):
        load_image_folder(tmp_path, 8, channels=1)
    with pytest.raises(ValueError, match="huge.png"):
        load_image_folder(tmp_path, 8)  # the channel probe reads the header too


def test_bad_crc_is_a_clear_error_and_leaves_nothing(tmp_path):
    payload = b"\x89PNG" + bytes(range(256)) * 8
    data = bytearray(_zip({"a/0.png": _png(), "b/0.bin": payload}, zipfile.ZIP_STORED))
    at = bytes(data).find(bytes(range(256)))
    data[at + 100] ^= 0xFF
    with pytest.raises(ValueError, match="not a readable zip file: Bad CRC-32"):
        extract_zip(bytes(data), tmp_path)
    assert _left_behind(tmp_path) == []


def test_encrypted_member_is_refused(tmp_path):
    data = _patch_headers(_zip({"a/0.png": _png(), "b/0.png": _png()}), 6, b"\x01")  # general purpose flag bit 0
    with pytest.raises(ValueError, match="is encrypted"):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


def test_unsupported_compression_is_refused(tmp_path):
    data = _patch_headers(_zip({"a/0.png": _png(), "b/0.png": _png()}), 8, struct.pack("<H", 99))
    with pytest.raises(ValueError, match="unsupported compression method"):
        extract_zip(data, tmp_path)
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/abs/evil.png"])
def test_paths_that_escape_are_refused(tmp_path, name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/0.png", _png())
        archive.writestr(zipfile.ZipInfo(name), _png())
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
        extract_zip(_zip({}), tmp_path)


def test_uploads_folder_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "uploads").write_text("in the way")
    with pytest.raises(ValueError, match="cannot store the upload"):
        extract_zip(_folder_zip(), tmp_path)


def test_identical_uploads_at_once_all_succeed(tmp_path):
    data = _folder_zip(n_per_class=20)
    results, errors = [], []
    barrier = threading.Barrier(6)

    def upload():
        barrier.wait()
        try:
            results.append(extract_zip(data, tmp_path))
        except Exception as exc:  # noqa: BLE001 - any failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert len(_left_behind(tmp_path)) == 1  # one folder, no staging folders
    assert len(load_image_folder(results[0], 8)) == 40

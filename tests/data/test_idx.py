"""The IDX reader against hand-made bytes, good and bad."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from genreg_core.data.idx import parse_idx, read_idx, read_idx_pair


def _idx(type_byte: int, shape: tuple[int, ...], body: bytes) -> bytes:
    """An IDX file written by hand: magic 00 00 type ndim, big-endian uint32 sizes, then the body."""
    return bytes([0, 0, type_byte, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape) + body


def test_uint8_images_read_in_c_order():
    body = bytes(range(24))  # 2 images of 3×4
    array = parse_idx(_idx(0x08, (2, 3, 4), body))
    assert array.dtype == np.uint8 and array.shape == (2, 3, 4)
    assert array[1, 2, 3] == 23 and array[0, 1, 0] == 4  # element (i, j, k) is byte i·12 + j·4 + k


def test_big_endian_int32_and_float():
    ints = parse_idx(_idx(0x0C, (3,), struct.pack(">3i", -1, 256, 70000)))
    assert ints.tolist() == [-1, 256, 70000]
    floats = parse_idx(_idx(0x0D, (2,), struct.pack(">2f", 1.5, -0.25)))
    assert floats.tolist() == [1.5, -0.25]


def test_gzip_and_raw_files_read_alike(tmp_path):
    data = _idx(0x08, (2, 2), bytes([1, 2, 3, 4]))
    (tmp_path / "raw-idx1").write_bytes(data)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(data))
    assert read_idx(tmp_path / "raw-idx1").tolist() == [[1, 2], [3, 4]]
    assert read_idx(tmp_path / "packed.gz").tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "shorter than the 4-byte magic"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),  # first bytes not zero
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),  # unknown type byte
    (b"\x00\x00\x08\x00", "not an IDX file"),  # no dimensions
    (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
    (_idx(0x08, (2, 3, 4), bytes(23)), "truncated IDX file"),
    (_idx(0x08, (2,), bytes(3)), "unexpected bytes"),
])
def test_bad_bytes_raise_clear_errors(data, message):
    with pytest.raises(ValueError, match=message):
        parse_idx(data, "some.idx")


def test_huge_header_refused_before_reading():
    with pytest.raises(ValueError, match="promises"):
        parse_idx(_idx(0x08, (100_000, 100_000, 1), b""), "huge.idx")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_idx(0x08, (100,), bytes(100)))[:-12])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(path)


def test_pair_counts_must_agree(tmp_path):
    (tmp_path / "images").write_bytes(_idx(0x08, (3, 2, 2), bytes(12)))
    (tmp_path / "labels").write_bytes(_idx(0x08, (2,), bytes([0, 1])))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        read_idx_pair(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "labels").write_bytes(_idx(0x08, (3,), bytes([0, 1, 2])))
    images, labels = read_idx_pair(tmp_path / "images", tmp_path / "labels")
    assert images.shape == (3, 2, 2) and labels.dtype == np.int64 and labels.tolist() == [0, 1, 2]


def test_pair_rejects_wrong_ranks(tmp_path):
    (tmp_path / "images").write_bytes(_idx(0x08, (4,), bytes(4)))
    (tmp_path / "labels").write_bytes(_idx(0x08, (4,), bytes(4)))
    with pytest.raises(ValueError, match="expected uint8 images"):
        read_idx_pair(tmp_path / "images", tmp_path / "labels")

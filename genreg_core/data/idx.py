"""A reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw), in a few lines of numpy.

An IDX file is a 4-byte magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes,
then the data in C order, big-endian (LeCun et al., http://yann.lecun.com/exdb/mnist/). MNIST's and
Fashion-MNIST's files hold uint8 (type ``0x08``): images ``(N, 28, 28)`` and labels ``(N,)``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type byte -> numpy dtype (multi-byte types are big-endian)
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 2**31  # a header that promises more data than this is refused before reading


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """The array stored in the IDX bytes ``data``; ``ValueError`` naming ``name`` for a malformed file.

    Errors: a wrong magic (first two bytes not zero, an unknown type byte, no dimensions), a header or
    body shorter than the header promises (truncated), or trailing bytes after the data.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file ({len(data)} bytes, shorter than the 4-byte magic)")
    zero, type_byte, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_byte not in IDX_DTYPES or ndim == 0:
        raise ValueError(f"{name}: not an IDX file (magic {data[:4].hex()}; expected 0000 then a type byte in "
                         f"{', '.join(f'{t:02x}' for t in IDX_DTYPES)} and a dimension count ≥ 1)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, the magic promises {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_byte]
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if n_bytes > MAX_IDX_BYTES:
        raise ValueError(f"{name}: IDX header promises {n_bytes:,} bytes of data, more than {MAX_IDX_BYTES:,}")
    if len(data) - header < n_bytes:
        raise ValueError(f"{name}: truncated IDX file (shape {shape} needs {n_bytes:,} data bytes, "
                         f"found {len(data) - header:,})")
    if len(data) - header > n_bytes:
        raise ValueError(f"{name}: {len(data) - header - n_bytes:,} unexpected bytes after the IDX data "
                         f"of shape {shape}")
    array = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file, gzip-compressed (by its magic bytes, whatever its name) or raw."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
    return parse_idx(raw, str(path))


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 from an images and a labels IDX file.

    ``ValueError`` when the images are not 3-D uint8, the labels not 1-D uint8, or their counts disagree.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} "
                         "labels; the counts must agree")
    return images, labels.astype(np.int64)

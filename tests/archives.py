"""Generated images and zip archives for the upload tests and ``faults/hostile.py``."""

from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from pathlib import Path

from PIL import Image


def png(size=(8, 8), mode="L", value=0) -> bytes:
    """A PNG of one colour."""
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, format="PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels (its data is tiny): what a decoder sees first."""
    data = bytearray(png((1, 1)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``{name: payload}``; a name starting with "/" is stored as it is (an absolute path)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, payload in members.items():
            archive.writestr(zipfile.ZipInfo(name) if name.startswith("/") else name, payload)
    return buffer.getvalue()


def folder_zip(n_per_class=3, top="digits") -> bytes:
    """A valid upload: ``top/<a|b>/<i>.png``."""
    return make_zip({f"{top}/{c}/{i}.png": png(value=40 * i) for c in ("a", "b") for i in range(n_per_class)})


def patch_headers(data: bytes, offset_in_header: int, value: bytes) -> bytes:
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


def upload_at_once(data: bytes, home: Path, n: int) -> tuple[list[Path], list[BaseException]]:
    """``extract_zip(data, home)`` from ``n`` threads released together: (the folders returned, the errors)."""
    from genreg_core.data.uploads import extract_zip

    results, errors, barrier = [], [], threading.Barrier(n)

    def upload():
        barrier.wait()
        try:
            results.append(extract_zip(data, home))
        except BaseException as exc:  # noqa: BLE001 - the callers judge any failure
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors

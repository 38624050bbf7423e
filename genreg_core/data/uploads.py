"""Uploaded image folders: a zip unpacked under ``GENREG_HOME/uploads`` with bounded size and nothing left behind.

Everything is checked from the archive's directory (and the images' headers) before a byte is written:
member count, total uncompressed size, compression ratio, paths that would escape the folder, encrypted
members, unsupported compression and each image's pixel count. The members are then streamed to a
staging folder with a running size total and the folder is renamed into place, so a failure at any point
removes what was written and two identical uploads at once both succeed; a staging folder left by a process
that was killed mid-upload is removed by the next upload after an hour. Every failure is a ``ValueError``.
Images are decoded only as PNG or JPEG (``datasets.ACCEPTED_FORMATS``), whatever their names; members are
written as regular files only (a symbolic link in the archive is never created), and the hidden and macOS
members that are not unpacked are reported by :func:`unpack_upload`, never dropped silently.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from genreg_core.data.datasets import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, SkippedEntry, open_image

CHUNK = 1 << 20  # bytes per streamed read
STALE_STAGING_S = 3600  # a staging folder untouched this long belongs to an upload whose process was killed
SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


@dataclass(frozen=True)
class UploadLimits:
    max_total_bytes: int = int(float(os.environ.get("GENREG_UPLOAD_MAX_MB", 512)) * 2**20)  # unpacked size
    max_members: int = int(os.environ.get("GENREG_UPLOAD_MAX_FILES", 50_000))  # files in the archive
    max_image_pixels: int = MAX_IMAGE_PIXELS  # width × height of each image
    max_ratio: int = 100  # uncompressed / compressed size of a member above 1 MiB (zip bombs reach 1000)


@dataclass(frozen=True)
class Upload:
    """An unpacked upload: the folder of class folders and the archive's members that were not unpacked."""

    root: Path
    skipped: list[SkippedEntry]


def extract_zip(data: bytes, home: Path, limits: UploadLimits | None = None) -> Path:
    """Unpack a zip of ``ROOT/<class>/*.png`` into a content-addressed folder; returns the folder of class folders."""
    return unpack_upload(data, home, limits).root


def unpack_upload(data: bytes, home: Path, limits: UploadLimits | None = None) -> Upload:
    """:func:`extract_zip`, also naming the hidden and macOS members that were not unpacked."""
    limits = limits or UploadLimits()
    uploads = Path(home) / "uploads"
    target = uploads / hashlib.sha256(data).hexdigest()[:16]
    if target.is_dir():
        with _open_archive(data) as archive:
            return Upload(zip_root(target), _skipped_members(archive))
    try:
        uploads.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(uploads)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=uploads))
    except OSError as exc:
        raise ValueError(f"cannot store the upload under {uploads}: {exc.strerror or exc}") from exc
    try:
        with _open_archive(data) as archive:
            members = _checked_members(archive, staging, limits)
            _check_images(archive, members, limits)
            _write_members(archive, members, staging, limits)
            skipped = _skipped_members(archive)
        _publish(staging, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, EOFError,
            zlib.error) as exc:
        raise ValueError(f"the upload is not a readable zip file: {exc}") from exc
    except OSError as exc:
        raise ValueError(f"cannot unpack the upload under {uploads}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Upload(zip_root(target), skipped)


def _remove_stale_staging(uploads: Path) -> None:
    """Remove staging folders nobody has written to for ``STALE_STAGING_S`` (left by killed uploads)."""
    cutoff = time.time() - STALE_STAGING_S
    for folder in uploads.glob(".staging-*"):
        try:
            if folder.lstat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed by a concurrent upload in between
            continue


def _open_archive(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ValueError(f"the upload is not a zip file: {exc}") from exc


def _skipped(name: str) -> bool:
    """macOS resource forks and hidden files are not part of the image folder."""
    return any(part.startswith(".") and part not in (".", "..") or part == "__MACOSX"
               for part in PurePosixPath(name).parts)


def _skipped_members(archive: zipfile.ZipFile) -> list[SkippedEntry]:
    """The files of the archive that are not unpacked (hidden files, macOS resource forks)."""
    return [SkippedEntry(f"{m.filename} in the upload", "hidden file or macOS metadata (not unpacked)")
            for m in archive.infolist() if not m.is_dir() and _skipped(m.filename)]


def _checked_members(archive: zipfile.ZipFile, staging: Path, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """The files to write, after every check the archive's directory allows."""
    root = staging.resolve()
    for m in archive.infolist():
        dest = (staging / m.filename).resolve()
        if not dest.is_relative_to(root) or dest == root:
            raise ValueError(f"zip entry {m.filename!r} points outside the archive")
    members = [m for m in archive.infolist() if not m.is_dir() and not _skipped(m.filename)]
    if not members:
        raise ValueError("the upload holds no files (expected ROOT/<class>/*.png)")
    if len(members) > limits.max_members:
        raise ValueError(f"the upload holds {len(members):,} files, more than the limit of {limits.max_members:,} "
                         "(GENREG_UPLOAD_MAX_FILES)")
    total = sum(m.file_size for m in members)
    if total > limits.max_total_bytes:
        raise ValueError(f"the upload unpacks to {total / 2**20:,.0f} MB, more than the limit of "
                         f"{limits.max_total_bytes / 2**20:,.0f} MB (GENREG_UPLOAD_MAX_MB)")
    for m in members:
        if m.flag_bits & 0x1:
            raise ValueError(f"zip entry {m.filename!r} is encrypted; upload an unencrypted zip")
        if m.compress_type not in SUPPORTED_COMPRESSION:
            raise ValueError(f"zip entry {m.filename!r} uses an unsupported compression method ({m.compress_type}); "
                             "use deflate")
        if m.file_size > 2**20 and m.file_size > limits.max_ratio * max(1, m.compress_size):
            raise ValueError(f"zip entry {m.filename!r} expands {m.file_size // max(1, m.compress_size):,}-fold "
                             f"(limit {limits.max_ratio}); this looks like a zip bomb")
    return members


def _check_images(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], limits: UploadLimits) -> None:
    """Read each image's header (a few KB) and refuse one with too many pixels, before anything is written."""
    for m in members:
        if PurePosixPath(m.filename).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name = f"{m.filename!r} in the upload"
        try:
            with archive.open(m) as handle, open_image(handle, name, limits.max_image_pixels):
                pass
        except (OSError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
            raise ValueError(f"zip entry {m.filename!r} is not a readable image: {exc}") from exc


def _write_members(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], staging: Path,
                   limits: UploadLimits) -> None:
    """Stream the members to ``staging``, stopping as soon as the running total passes the limit."""
    written = 0
    for m in members:
        dest = staging / m.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, dest.open("wb") as dst:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > limits.max_total_bytes:
                    raise ValueError(f"the upload unpacks to more than {limits.max_total_bytes / 2**20:,.0f} MB "
                                     "(GENREG_UPLOAD_MAX_MB)")
                dst.write(chunk)


def _publish(staging: Path, target: Path) -> None:
    """Rename the staging folder into place; an identical upload that got there first counts as success."""
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise


def zip_root(folder: Path) -> Path:
    """The folder holding the class folders: the zip itself or its single top-level folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir() and all(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]
    return folder

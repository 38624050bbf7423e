"""Argument types of the ``genreg`` CLI: every bad value is refused while parsing, naming its flag, before any work.

argparse turns an ``ArgumentTypeError`` into ``genreg CMD: error: argument --FLAG: MESSAGE`` and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import stat
import sys
import tempfile
from pathlib import Path

from genreg_core.data.datasets import IMAGE_SIZE_RANGE

MAX_SEED = 2**32 - 1  # numpy and scikit-learn seeds
MAX_PER_CLASS = 10_000  # images per class asked of the generator
MAX_IMAGES = 100_000  # real images picked by --n
MAX_STEPS = 1_000_000  # generator optimizer steps
MAX_BATCH = 4096  # images per step
MAX_EPOCHS = 10_000  # classifier and feature-extractor epochs
MAX_SAMPLER_STEPS = 1000  # DDIM steps (DDPM always takes t steps)
MAX_GUIDANCE = 100.0  # classifier-free guidance w
MAX_K = 1000  # nearest neighbours
MAX_T = 100_000  # start steps (the generator's own T is checked later)
MAX_CONCURRENT = 64  # runs at once


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``genreg CMD: error: …``) instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_in(low: int, high: int):
    """An integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must lie in [{low:,}, {high:,}], got {value:,}")
        return value

    return parse


def float_in(low: float, high: float):
    """A finite number in ``[low, high]`` (nan and inf are refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a finite number in [{low:g}, {high:g}], got {text}")
        return value

    return parse


def per_class_or_all(text: str) -> int | None:
    """A positive number of images per class, or ``all``."""
    if text == "all":
        return None
    try:
        return int_in(1, MAX_IMAGES)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"takes a positive integer or 'all': {exc}") from None


def text(value: str) -> str:
    """A string the file system and the run store can hold (argv that is not valid UTF-8 is refused)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{value.encode('utf-8', 'backslashreplace').decode()!r} is not valid "
                                         "UTF-8") from None
    if "\x00" in value:
        raise argparse.ArgumentTypeError("contains a NUL character")
    return value


def _existing_parent(path: Path) -> None:
    """The folder ``path`` goes in exists and takes a new file (tried with an unnamed temporary file, so nothing is
    left behind: /proc, a read-only folder or file system are refused here, before any work)."""
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {parent} does not exist; create it first")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write in folder {parent} ({exc.strerror or exc})") from None


def out_file(value: str) -> Path:
    """A file to write: its folder exists and it is not itself a folder."""
    path = Path(text(value))
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise argparse.ArgumentTypeError(f"{path} is not a regular file (a device, FIFO or socket); give a file name")
    _existing_parent(path)
    return path


def out_folder(value: str) -> Path:
    """A folder to write into: it is a folder if it exists, and its parent folder exists."""
    path = Path(text(value))
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
    _existing_parent(path)
    return path


def out_table(value: str) -> Path:
    """An export file: ``.csv`` or ``.json`` in an existing folder."""
    path = out_file(value)
    if path.suffix not in (".csv", ".json"):
        raise argparse.ArgumentTypeError(f"must end in .csv or .json, got {path.name}")
    return path


SEED = int_in(0, MAX_SEED)
IMAGE_SIZE = int_in(*IMAGE_SIZE_RANGE)


def warn_skipped(skipped: list) -> list[dict[str, str]]:
    """Print one warning line per entry of a data folder or upload that was not read; returns them for ``--json``."""
    for entry in skipped:
        print(f"genreg: warning: skipped {entry.path} ({entry.reason})", file=sys.stderr)
    return [entry.as_dict() for entry in skipped]

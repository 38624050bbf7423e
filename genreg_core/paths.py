"""Where genreg keeps its caches, uploads and runs on disk."""

from __future__ import annotations

import os
from pathlib import Path


def genreg_home() -> Path:
    """Where genreg keeps caches and runs: ``$GENREG_HOME``, default ``~/.genreg``; ``ValueError`` if not a folder."""
    home = Path(os.environ.get("GENREG_HOME") or Path.home() / ".genreg").expanduser()
    if home.exists() and not home.is_dir():
        raise ValueError(f"GENREG_HOME {home} is not a folder; point it at a folder (it is created if missing)")
    return home

"""Is a run's worker alive: process start times from ``/proc`` (so a reused pid is not taken for the worker), and
the last line of a worker's log."""

from __future__ import annotations

import os
from pathlib import Path


def proc_stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after "(command name)" (the state first), or None without that file."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except (OSError, ValueError):
        return None


def process_start(pid: int) -> str | None:
    """Process ``pid``'s start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    fields = proc_stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def worker_alive(pid: str | None, start: str | None = None) -> bool:
    """Whether worker ``pid`` exists, is not a zombie (a killed child its parent has not reaped yet) and, when its
    recorded ``start`` time is known, is the same process (not a later one that reuses the pid)."""
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, OverflowError):
        return False
    if not Path("/proc/self").exists():  # no /proc (macOS): os.kill is all we can ask
        return True
    fields = proc_stat_fields(int(pid))
    if not fields:  # it ended in between
        return False
    if start is not None and len(fields) > 19 and fields[19] != start:
        return False
    return fields[0] not in ("Z", "X")


def last_line(path: Path) -> str | None:
    """The last non-empty line of a text file, or None."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:500] if lines else None

"""Progress bars that show the time left, and a server-wide cache for results computed with progress.

A function under ``st.cache_data`` must not draw on elements created outside it (every replay raises
``CacheReplayClosureError``), so long computations that report progress are cached here instead: the page
looks the key up first and draws a progress bar only on a miss.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from typing import Any

import streamlit as st


def format_seconds(seconds: float) -> str:
    """``"45 s"`` / ``"2 min 5 s"`` for a duration."""
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


def eta_text(done: int, total: int, elapsed: float, message: str = "") -> str:
    """``"message — 3/10, about 12 s left"``; no estimate before the first unit of work is done."""
    head = f"{message} — {done}/{total}" if message else f"{done}/{total}"
    if done <= 0 or done >= total:
        return head
    return f"{head}, about {format_seconds(elapsed / done * (total - done))} left"


@contextmanager
def progress_bar(text: str):
    """An ``st.progress`` bar with elapsed-time based estimates; yields ``callback(done, total, message="")``."""
    bar = st.progress(0.0, text=text)
    start = time.monotonic()

    def update(done: int, total: int, message: str = "") -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=eta_text(done, total, time.monotonic() - start,
                                                                    message or text))

    try:
        yield update
    finally:
        bar.empty()


class ResultCache:
    """A small thread-safe LRU map shared by every session of the server."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def warm_up_umap_once():
    """Once per server: compile UMAP in a background thread (started after a page's first result is drawn, so
    it does not slow that first view down)."""
    from genreg_core.projection import warm_up_umap

    return warm_up_umap()


@st.cache_resource(show_spinner=False)
def result_cache(name: str, max_entries: int = 16) -> ResultCache:
    """The server-wide cache called ``name``."""
    return ResultCache(max_entries)


def cached_with_progress(name: str, key: Hashable, compute: Callable[[Callable], Any], text: str) -> Any:
    """``compute(progress)`` once per ``key`` with a progress bar; later calls return the cached result at once."""
    cache = result_cache(name)
    result = cache.get(key)
    if result is None:
        with progress_bar(text) as progress:
            result = compute(progress)
        cache.put(key, result)
    return result

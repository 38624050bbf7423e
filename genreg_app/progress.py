"""Progress bars that show the time left, a server-wide cache for results computed with progress, and jobs that
run in the background while a page shows something else.

A function under ``st.cache_data`` must not draw on elements created outside it (every replay raises
``CacheReplayClosureError``), so long computations that report progress are cached here instead: the page
looks the key up first and draws a progress bar only on a miss.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import streamlit as st

from genreg_core.lru import LRUCache


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


@st.cache_resource(show_spinner=False)
def warm_up_umap_once():
    """Once per server: compile UMAP in a background thread (started after a page's first result is drawn, so
    it does not slow that first view down)."""
    from genreg_core.evaluation.projection import warm_up_umap

    return warm_up_umap()


@st.cache_resource(show_spinner=False)
def result_cache(name: str, max_entries: int = 16) -> LRUCache:
    """The server-wide cache called ``name`` (shared by every session of the server)."""
    return LRUCache(max_entries)


_registry_lock = threading.Lock()  # guards creating a key's lock or job, so two sessions never create two


@st.cache_resource(show_spinner=False)
def _key_locks() -> LRUCache:
    """One lock per key being computed, so two tabs asking for the same result compute it once."""
    return LRUCache(256)


def _key_lock(name: str, key: Hashable) -> threading.Lock:
    locks = _key_locks()
    with _registry_lock:
        lock = locks.get((name, key))
        if lock is None:
            lock = threading.Lock()
            locks.put((name, key), lock)
    return lock


def cached_with_progress(name: str, key: Hashable, compute: Callable[[Callable], Any], text: str) -> Any:
    """``compute(progress)`` once per ``key`` with a progress bar; later calls return the cached result at once.

    A session that asks while another is computing the same key waits for that result instead of computing it
    again (two tabs, or a rerun that interrupted the first computation's script run).
    """
    cache = result_cache(name)
    result = cache.get(key)
    if result is not None:
        return result
    lock = _key_lock(name, key)
    if not lock.acquire(blocking=False):
        with st.spinner("This result is already being computed (by another tab, or ahead of time); waiting for "
                        "it…"):
            lock.acquire()
    try:
        result = cache.get(key)
        if result is None:
            with progress_bar(text) as progress:
                result = compute(progress)
            cache.put(key, result)
    finally:
        lock.release()
    return result


class Cancelled(Exception):
    """Background work given up because the process is exiting."""


def raise_if_exiting(done: int = 0, total: int = 0) -> None:
    """A progress callback for background work: raises :class:`Cancelled` once the main thread has finished (the
    interpreter is exiting: a script run ended, or Ctrl-C stopped the server), so the work ends at its next step."""
    if not threading.main_thread().is_alive():
        raise Cancelled


def prefetch(name: str, key: Hashable, compute: Callable[[Callable[[int, int], None]], Any]) -> bool:
    """Compute ``key`` of cache ``name`` ahead of time in a background thread, unless it is cached or already being
    computed; returns whether it started. A page asking for the key meanwhile waits for this computation
    (``cached_with_progress``) instead of starting its own. A failure is not cached: the page then computes the
    result itself and shows the error.

    ``compute(progress)`` must call ``progress`` between its steps: at exit it raises :class:`Cancelled` there. The
    thread is not a daemon, so the interpreter waits for that step instead of tearing torch down under it (which
    aborts the process with SIGABRT)."""
    cache = result_cache(name)
    if cache.get(key) is not None:
        return False
    lock = _key_lock(name, key)
    if not lock.acquire(blocking=False):
        return False

    def run() -> None:
        try:
            if cache.get(key) is None:
                cache.put(key, compute(raise_if_exiting))
        except Exception:  # noqa: BLE001 - Cancelled, or a failure the page reports when it computes the key itself
            pass
        finally:
            lock.release()

    threading.Thread(target=run, name=f"genreg-prefetch-{name}", daemon=False).start()
    return True


@st.cache_resource(show_spinner=False)
def _background_executor() -> ThreadPoolExecutor:
    """One worker thread per server for results computed while pages show something else."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="genreg-background")


def in_background(name: str, key: Hashable, compute: Callable[[], Any]) -> Future:
    """The server-wide job computing ``compute()`` for ``key`` in cache ``name``, started on its first request.

    Every session (tab) asking for the same key gets the same job. A failed job is forgotten once its failure has
    been read, so asking again retries it.
    """
    cache = result_cache(name)
    with _registry_lock:
        job = cache.get(key)
        if job is None:
            job = _background_executor().submit(compute)
            cache.put(key, job)
    if job.done() and job.exception() is not None:
        cache.pop(key)
    return job


def rerun_when_done(job: Future, every: float = 1.0) -> None:
    """Poll ``job`` every ``every`` seconds in a fragment and rerun the page once it has finished."""

    @st.fragment(run_every=every)
    def poll() -> None:
        if job.done():
            st.rerun()

    poll()

"""The shared run store and run pickers for the pages that replay training runs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

from genreg_app.url_state import UrlState, one_of
from genreg_core.config import TrainConfig
from genreg_core.lab import Lab
from genreg_core.runs.store import RunSpec, RunStore
from genreg_core.runs.worker import launch_run


@st.cache_resource
def run_store() -> RunStore:
    """One store per server process (it only holds a client to the SQLite tracking store)."""
    return RunStore()


@contextmanager
def store_errors(stop: bool = True) -> Iterator[None]:
    """Show a run-store failure (damaged or locked store, GENREG_HOME not a folder, unknown run) as one error.

    ``stop`` ends the page there; without it the rest of the block is skipped and the page goes on.
    """
    try:
        yield
    except ValueError as exc:  # StoreError is a ValueError
        st.error(str(exc))
        if stop:
            st.stop()


def guarded(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` with run-store failures shown as one error (for fragments that poll the store)."""

    @functools.wraps(fn)
    def run() -> None:
        with store_errors(stop=False):
            fn()

    return run


def run_label(run) -> str:
    """A run's widget label: stable over its life (no status) and unique (name and id prefix).

    Run widgets take these labels as their options rather than run ids with a ``format_func``: Streamlit serializes
    a stored choice with the previous rerun's ``format_func``, which does not know runs that appeared since.
    """
    return f"{run.name} · {run.run_id[:8]}"


def pick_run(lab: Lab, methods: tuple[str, ...], label: str, key: str, url: UrlState | None = None) -> str:
    """A select box of runs of ``methods`` with at least one epoch recorded, mirrored under the URL key ``run``
    (a run id) when ``url`` is given.

    Without such a run, offers to launch one of ``methods[0]`` and stops the page.
    """
    with store_errors():
        found = [r for r in run_store().list_runs() if r.method in methods and r.epoch >= 1]
    runs = {run_label(r): r for r in found}  # the run's progress goes in the caption below, not in the label
    if runs:
        if url is not None:
            by_id = {r.run_id: run_label(r) for r in found}
            url.bind("run", key, lambda text: by_id[one_of(list(by_id))(text)],
                     encode=lambda chosen: runs[chosen].run_id if chosen in runs else "")
        run = runs[st.selectbox(label, list(runs), key=key)]
        st.caption(f"{run.status} · epoch {run.epoch}/{run.epochs}")
        return run.run_id
    st.info(f"No {methods[0]} run with a finished epoch yet.")
    if st.button(f"Launch a 10-per-class {methods[0]} run (30 epochs, in the background)", key=f"{key}.launch",
                 type="primary"):
        spec = RunSpec(TrainConfig(method=methods[0]), lab.data_config, lab.generator_source, lab.device.type)
        with store_errors():
            launch_run(run_store(), spec)
        st.toast("Run launched: follow it on the Training runs page, then come back here.")
    st.stop()

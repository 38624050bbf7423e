"""The shared run store and run pickers for the pages that replay training runs."""

from __future__ import annotations

import streamlit as st

from genreg_core.config import TrainConfig
from genreg_core.lab import Lab
from genreg_core.runs import RunSpec, RunStore
from genreg_core.worker import launch_run


@st.cache_resource
def run_store() -> RunStore:
    """One store per server process (it only holds a client to the SQLite tracking store)."""
    return RunStore()


def pick_run(lab: Lab, methods: tuple[str, ...], label: str, key: str) -> str:
    """A select box of runs of ``methods`` with at least one epoch recorded.

    Without such a run, offers to launch one of ``methods[0]`` and stops the page.
    """
    runs = {r.run_id: f"{r.name} · {r.status} · epoch {r.epoch}/{r.epochs} · {r.run_id[:6]}"
            for r in run_store().list_runs() if r.method in methods and r.epoch >= 1}
    if runs:
        return st.selectbox(label, list(runs), format_func=runs.get, key=key)
    st.info(f"No {methods[0]} run with a finished epoch yet.")
    if st.button(f"Launch a 10-per-class {methods[0]} run (30 epochs, in the background)", key=f"{key}.launch",
                 type="primary"):
        spec = RunSpec(TrainConfig(method=methods[0]), lab.data_config, lab.generator_source, lab.device.type)
        launch_run(run_store(), spec)
        st.toast("Run launched: follow it on the Training runs page, then come back here.")
    st.stop()

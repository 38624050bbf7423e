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


def pick_run(methods: tuple[str, ...], label: str, key: str) -> str | None:
    """A select box of runs of ``methods`` that have at least one epoch recorded; None when there is none."""
    runs = {r.run_id: f"{r.name} · {r.status} · epoch {r.epoch}/{r.epochs} · {r.run_id[:6]}"
            for r in run_store().list_runs() if r.method in methods and r.epoch >= 1}
    if not runs:
        return None
    return st.selectbox(label, list(runs), format_func=runs.get, key=key)


def launch_button(lab: Lab, method: str, key: str) -> None:
    """Offer to launch a default 10-per-class run of ``method`` in the background."""
    if st.button(f"Launch a 10-per-class {method} run (30 epochs, in the background)", key=key, type="primary"):
        spec = RunSpec(TrainConfig(method=method), lab.data_config, lab.generator_source, lab.device.type)
        launch_run(run_store(), spec)
        st.toast("Run launched: follow it on the Training runs page, then come back here.")

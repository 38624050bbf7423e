"""The pages' init and embedding controls reach the core configs (AppTest, shipped models)."""

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_training_runs_page_launches_pretrained_runs(monkeypatch, tmp_path):
    from genreg_core.runs.store import RunStore

    own = RunStore(tmp_path / "runs")  # other tests count the runs of the session's store
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: own)
    specs = []

    def fake_launch(store, spec, max_concurrent=2):
        specs.append(spec)
        return store.create_run(spec)

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", fake_launch)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="tr.init").value == "scratch"
    at.selectbox(key="tr.init").set_value("pretrained")
    at.multiselect(key="tr.methods").set_value(["adarand"])
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, at.exception
    assert [(s.train.method, s.train.init) for s in specs] == [("adarand", "pretrained")]
    assert own.list_runs()[0].method == "adarand"


def test_feature_space_page_measures_in_the_chosen_embedding():
    from genreg_core.analysis.feature_space import FeatureSpaceConfig, compute_feature_space
    from genreg_core.config import SamplerConfig
    from genreg_core.lab import open_lab

    at = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=180)
    at.session_state["fs.per_class"] = 10
    at.session_state["fs.steps"] = 3
    at.session_state["fs.embedding"] = "random"
    at.run()
    assert not at.exception, at.exception
    expected = compute_feature_space(open_lab(), FeatureSpaceConfig(per_class=10, sampler=SamplerConfig(n_steps=3),
                                                                    embedding="random")).metrics.overall
    shown = {m.label: m.value for m in at.metric}
    assert shown["Coverage"] == f"{expected['coverage']:.3f}" and shown["Recall"] == f"{expected['recall']:.3f}"


def test_reverse_step_page_sweeps_in_the_chosen_embedding():
    at = AppTest.from_file("../../app_pages/reverse_step.py", default_timeout=240)
    at.session_state["rs.steps"] = 2
    at.run()
    assert not at.exception, at.exception
    at.slider(key="rs.sweep_n").set_value(5)
    at.button_group(key="rs.sweep_t").set_value([0, 1000])
    at.selectbox(key="rs.embedding").set_value("random")
    next(b for b in at.button if b.label == "Run sweep").click()
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["rs.sweep_config"].embedding == "random"
    table = at.dataframe[0].value
    assert list(table["t"]) == [0, 1000] and set(table["embedding"]) == {"random"}

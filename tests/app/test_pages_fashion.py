"""Every page renders on Fashion-MNIST, picked once in the sidebar (its shipped models, 28×28)."""

import dataclasses

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from genreg_core.config import SamplerConfig
from genreg_core.lab import Lab
from genreg_core.runs.store import RunStore


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _dataset_caption(at) -> str:
    return at.sidebar.caption[0].value


def _few_steps(monkeypatch) -> None:
    """Home's grid and the Feature space first view (which Home starts) with 2 DDIM steps: the pages, not the
    sampler, are under test here."""
    import genreg_app.feature_space as fs

    sample, first = Lab.sample, fs.first_view_config
    monkeypatch.setattr(Lab, "sample", lambda self, per_class, sampler=None, seed=0, on_progress=None: sample(
        self, per_class, dataclasses.replace(sampler or SamplerConfig(), n_steps=2), seed, on_progress))
    monkeypatch.setattr(fs, "first_view_config", lambda lab: dataclasses.replace(
        first(lab), per_class=10, sampler=dataclasses.replace(first(lab).sampler, n_steps=2)))


def test_every_page_renders_on_fashion_mnist(monkeypatch, tmp_path):
    from genreg_core.analysis.reverse_step import SweepConfig

    _few_steps(monkeypatch)
    empty = RunStore(tmp_path / "store")  # no runs: the replay pages offer a launch
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: empty)
    at = AppTest.from_file("../../app.py", default_timeout=180).run()  # Home, on digits
    at.selectbox(key="genreg.dataset").set_value("fashion-mnist").run()  # picked in the sidebar, as a person does
    assert not at.exception, at.exception
    assert len(at.get("image")) == 2
    assert "Dataset **fashion-mnist**" in at.caption[0].value and "1×28×28" in at.caption[0].value
    assert any("fashion-mnist" in i.value for i in at.info) or any(  # no claims judged on it yet, or its own
        "Claims judged on **fashion-mnist**" in c.value for c in at.caption)
    assert _dataset_caption(at).startswith("5,000 images: T-shirt/top 500")

    at.switch_page("app_pages/feature_space.py").run()
    assert not at.exception, at.exception
    assert at.caption[0].value.startswith("100 real vs 100 synthetic")
    assert len(at.get("plotly_chart")) == 2 and list(at.dataframe[0].value["class"])[1] == "T-shirt/top"
    assert any("outside every synthetic sample's k-NN ball" in c.value for c in at.caption)

    at.session_state["rs.steps"] = 2
    at.session_state["rs.sem_steps"] = 2
    at.session_state["rs.sweep_config"] = SweepConfig(t_values=(0, 1000), per_class=2, k=1,
                                                      sampler=SamplerConfig(n_steps=2))
    at.switch_page("app_pages/reverse_step.py").run()
    assert not at.exception, at.exception
    assert [c.key for c in at.get("plotly_chart")] == ["rs.sem_probs", "rs.curves", "rs.uncovered", "rs.drift"]
    assert any("outside every reconstruction's k-NN ball" in c.value for c in at.caption)

    for page, key in (("reference_vectors.py", "rv.run.launch"), ("meta_latents.py", "ml.run.launch")):
        at.switch_page(f"app_pages/{page}").run()
        assert not at.exception, at.exception
        assert at.button(key=key).label.startswith("Launch a 10-per-class")

    at.switch_page("app_pages/training_runs.py").run()
    assert not at.exception, at.exception
    assert any("No runs yet" in i.value for i in at.info)
    assert at.selectbox(key="genreg.dataset").value == "fashion-mnist"  # the choice survived every page
    assert _dataset_caption(at).startswith("5,000 images: T-shirt/top 500")

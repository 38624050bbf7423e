"""Pages restore their controls from the URL and ignore bad values with a notice (AppTest)."""

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

HOSTILE = {"t": "-5", "seed": "1e99", "run": "../../x", "color": "couleur✓", "n": "x" * 10_000, "bogus": "1"}


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _feature_space(params: dict) -> AppTest:
    at = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def test_feature_space_opens_on_the_url_values():
    at = _feature_space({"source": "reconstruct", "t": "300", "n": "10", "steps": "3", "seed": "7", "k": "3",
                         "method": "pca", "dim": "3", "color": "class", "classes": "1,4"})
    assert not at.exception, at.exception
    assert at.session_state["fs.source"] == "reconstruct"
    assert at.slider(key="fs.t").value == 300 and at.slider(key="fs.per_class").value == 10
    assert at.number_input(key="fs.seed").value == 7 and at.number_input(key="fs.k").value == 3
    assert at.radio(key="fs.dims").value == 3 and at.selectbox(key="fs.color").value == "class"
    assert at.multiselect(key="fs.classes").value == [1, 4]
    assert not at.warning or not any("Ignored" in w.value for w in at.warning)
    # the page computed what the URL asked for, and the URL mirrors the controls
    assert any("k = 3" in c.value for c in at.caption)
    assert at.query_params["t"] == "300" and at.query_params["color"] == "class"
    assert any("?" in c.value and "t=300" in c.value for c in at.code)


def test_feature_space_ignores_hostile_values_with_a_notice():
    at = _feature_space({**HOSTILE, "steps": "3", "source": "reconstruct"})
    assert not at.exception, at.exception
    (notice,) = [w.value for w in at.warning if "Ignored" in w.value]
    for part in ("t='-5'", "seed='1e99'", "10,000 characters", "unknown key 'bogus'", "color="):
        assert part in notice, part
    assert at.slider(key="fs.t").value == 500 and at.number_input(key="fs.seed").value == 0
    assert at.selectbox(key="fs.color").value == "source"
    assert "bogus" not in at.query_params  # the URL is rewritten with the page's own keys only


@pytest.fixture(scope="module")
def adarand_runs():
    """Two real tiny AdaRand runs (2 epochs) in the tests' run store: their ids."""
    import dataclasses

    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.runs.store import RunSpec, RunStore
    from genreg_core.runs.worker import execute_run

    store = RunStore()
    ids = []
    for seed in (0, 1):
        spec = RunSpec(dataclasses.replace(TrainConfig.tiny("adarand"), epochs=2, seed=seed), DataConfig(), None,
                       "cpu")
        ids.append(store.create_run(spec))
        execute_run(store, ids[-1])
    return ids


def test_replay_page_opens_the_run_and_epoch_of_its_url(adarand_runs):
    first, second = adarand_runs
    at = AppTest.from_file("../../app_pages/reference_vectors.py", default_timeout=120)
    at.query_params["run"], at.query_params["epoch"] = first, "1"
    at.run()
    assert not at.exception, at.exception
    assert first[:8] in at.selectbox(key="rv.run").value and at.slider(key="rv.epoch").value == 1
    assert at.query_params["run"] == first and at.query_params["epoch"] == "1"
    # a later choice is mirrored back into the URL
    at.selectbox(key="rv.run").set_value([o for o in at.selectbox(key="rv.run").options if second[:8] in o][0]).run()
    assert at.query_params["run"] == second


def test_replay_page_ignores_a_hostile_run_and_epoch(adarand_runs):
    at = AppTest.from_file("../../app_pages/reference_vectors.py", default_timeout=120)
    at.query_params["run"], at.query_params["epoch"] = "../../x", "1e99"
    at.run()
    assert not at.exception, at.exception
    (notice,) = [w.value for w in at.warning if "Ignored" in w.value]
    assert "run='../../x'" in notice and "epoch='1e99'" in notice
    assert at.slider(key="rv.epoch").value == 2  # the default: the last epoch

"""Every page runs under AppTest on the shipped models and shows what it should."""

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_home_page_shows_real_and_generated_grids():
    at = AppTest.from_file("../pages/home.py", default_timeout=120).run()
    assert not at.exception, at.exception
    assert "genreg" in at.title[0].value
    headers = [h.value for h in at.subheader]
    assert "Real (training split)" in headers and any(h.startswith("Generated") for h in headers)
    assert len(at.get("imgs")) == 2
    assert "Feature extractor test accuracy" in at.caption[0].value


def test_app_navigation_runs():
    at = AppTest.from_file("../app.py", default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("genreg")


def test_bad_image_folder_shows_error(tmp_path):
    at = AppTest.from_file("../pages/home.py", default_timeout=60)
    at.session_state["genreg.dataset"] = "folder"
    at.session_state["genreg.folder"] = str(tmp_path / "missing")
    at.run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)

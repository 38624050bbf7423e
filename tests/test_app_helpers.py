"""Streamlit-side helpers: selections, progress estimates, tables that show every row."""

import pandas as pd
import pytest


@pytest.mark.parametrize("customdata", [[7], {"0": 7}, (7,)])
def test_selected_point_ids_reads_plotly_5_and_7_customdata(customdata):
    from types import SimpleNamespace

    from genreg_app.render import selected_point_ids

    event = SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": customdata}, {"customdata": {"0": 2}},
                                                              {"x": 1.0}]))
    assert selected_point_ids(event) == [2, 7]
    assert selected_point_ids(None) == []


def test_eta_text_estimates_the_time_left():
    from genreg_app.progress import eta_text, format_seconds

    assert eta_text(0, 10, 5.0, "Sweeping") == "Sweeping — 0/10"
    assert eta_text(2, 10, 6.0, "Sweeping") == "Sweeping — 2/10, about 24 s left"
    assert format_seconds(125) == "2 min 5 s"
    assert eta_text(10, 10, 9.0) == "10/10"


def test_full_table_is_tall_enough_for_every_row(monkeypatch):
    import streamlit as st

    from genreg_app.render import full_table

    seen = {}
    monkeypatch.setattr(st, "dataframe", lambda frame, **kwargs: seen.update(kwargs))
    full_table(pd.DataFrame({"class": range(11)}))
    row_height, header = 35, 1
    assert seen["height"] >= row_height * (11 + header)


def test_two_sessions_asking_for_the_same_result_compute_it_once():
    import threading
    import time

    from genreg_app.progress import cached_with_progress

    calls, results = [], []

    def compute(progress):
        calls.append(1)
        time.sleep(0.5)  # long enough for the second session to arrive while the first computes
        progress(1, 1)
        return object()

    sessions = [threading.Thread(target=lambda: results.append(
        cached_with_progress("test-dedupe", "key", compute, "computing"))) for _ in range(2)]
    for s in sessions:
        s.start()
        time.sleep(0.05)
    for s in sessions:
        s.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] is results[1]
    assert cached_with_progress("test-dedupe", "other", compute, "computing") is not results[0]
    assert len(calls) == 2

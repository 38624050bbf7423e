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


def test_a_background_job_is_shared_by_key_and_a_failed_one_is_retried():
    import threading

    from genreg_app.progress import in_background

    calls, gate = [], threading.Event()

    def flaky():
        calls.append(1)
        assert gate.wait(10)
        if len(calls) == 1:
            raise ValueError("first try fails")
        return "ok"

    first = in_background("test-jobs", "key", flaky)
    assert in_background("test-jobs", "key", flaky) is first  # a second tab gets the running job
    gate.set()
    assert isinstance(first.exception(timeout=10), ValueError)
    jobs = [in_background("test-jobs", "key", flaky) for _ in range(2)]  # the failure is shown once, then retried
    retried = jobs[-1]
    assert retried is not first and retried.result(timeout=10) == "ok"
    assert in_background("test-jobs", "key", flaky) is retried and len(calls) == 2  # a success stays cached


def test_a_prefetched_result_is_computed_once_and_a_failed_prefetch_is_left_to_the_page():
    import threading

    from genreg_app.progress import cached_with_progress, prefetch

    calls, gate = [], threading.Event()

    def slow(progress):
        calls.append("prefetch")
        assert gate.wait(10)
        progress(1, 1)
        return "ahead of time"

    assert prefetch("test-prefetch", "key", slow)
    assert not prefetch("test-prefetch", "key", slow)  # already being computed
    waiting = threading.Thread(target=lambda: calls.append(
        cached_with_progress("test-prefetch", "key", lambda progress: "by the page", "computing")))
    waiting.start()  # a page asking meanwhile waits for the prefetch
    gate.set()
    waiting.join(10)
    assert calls == ["prefetch", "ahead of time"]
    assert not prefetch("test-prefetch", "key", slow)  # cached

    def broken(progress=None):
        raise ValueError("bad settings")

    assert prefetch("test-prefetch", "broken", broken)
    with pytest.raises(ValueError, match="bad settings"):  # the page computes it itself and sees the error
        cached_with_progress("test-prefetch", "broken", lambda progress: broken(), "computing")


def test_background_progress_raises_once_the_main_thread_has_finished(monkeypatch):
    import threading

    from genreg_app.progress import Cancelled, raise_if_exiting

    raise_if_exiting(1, 2)  # the main thread is alive: nothing happens
    finished = threading.Thread(target=lambda: None)
    finished.start()
    finished.join()
    monkeypatch.setattr(threading, "main_thread", lambda: finished)
    with pytest.raises(Cancelled):
        raise_if_exiting(1, 2)

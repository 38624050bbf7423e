"""Ctrl-C on ``streamlit run`` while Home's background prefetch runs: the server stops cleanly (exit 0), no abort."""

from __future__ import annotations

from tests.browser.driver import AppServer


def test_ctrl_c_while_home_prefetches_exits_cleanly(browser, tmp_path):
    with AppServer(tmp_path / "home") as server:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url)
        page.get_by_text("What the papers claim").first.wait_for(timeout=240_000)  # drawn: prefetch started
        code = server.interrupt()
        context.close()
        log = server.log()
    assert code == 0, log[-3000:]
    assert "terminate called" not in log and "Traceback" not in log, log[-3000:]

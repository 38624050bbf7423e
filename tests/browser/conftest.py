"""Fixtures for the browser tests: the real app served on localhost, driven by Playwright in Debian's Chromium.

Without Chromium or Playwright these tests are skipped, except where ``GENREG_REQUIRE_BROWSER=1`` (CI sets it),
where a missing browser is an error.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.browser.driver import AppServer, chromium_path, launch_browser

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

_missing = "Chromium" if chromium_path() is None else "Playwright" if sync_playwright is None else None
if _missing:
    if os.environ.get("GENREG_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"{_missing} is not installed but GENREG_REQUIRE_BROWSER=1")
    pytest.skip(f"{_missing} is not installed", allow_module_level=True)


def _tiny_replay_runs(home) -> dict[str, str]:
    """A real tiny AdaRand run and a real tiny MGR run, so the replay pages have something to show."""
    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.runs.store import RunSpec, RunStore
    from genreg_core.runs.worker import execute_run

    store = RunStore(home)
    ids = {}
    for method in ("adarand", "mgr"):
        spec = RunSpec(dataclasses.replace(TrainConfig.tiny(method), epochs=2), DataConfig(), None, "cpu")
        ids[method] = store.create_run(spec)
        execute_run(store, ids[method])
    return ids


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """The running app (its own GENREG_HOME, with two tiny replayable runs)."""
    home = tmp_path_factory.mktemp("browser_home")
    runs = _tiny_replay_runs(home)
    with AppServer(home) as server:
        server.runs = runs
        yield server


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = launch_browser(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app):
    """A fresh browser tab (tall, so screenshots show whole pages); fails the test on a server-side traceback."""
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()
    assert "Traceback" not in app.log(), app.log()[-4000:]

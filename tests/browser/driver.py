"""Drive the real app in headless Chromium: start a server, wait until a page is idle, find widgets.

Shared by the browser tests and ``bench/bench_interaction.py``. Playwright drives Debian's ``chromium``
(its own browser download is not reachable here).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]'
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The system Chromium, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` on a free localhost port with its own GENREG_HOME."""

    def __init__(self, home: Path, port: int | None = None, env: dict[str, str] | None = None):
        self.home, self.port = Path(home), port or free_port()
        self.url = f"http://localhost:{self.port}"
        self.log_path = self.home / "streamlit.log"
        self._env = dict(os.environ, GENREG_HOME=str(self.home), **(env or {}))
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> AppServer:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "localhost", "--server.headless", "true"],
            cwd=REPO, env=self._env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"streamlit did not start: {self.log_path.read_text()}")

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def interrupt(self, timeout: float = 300.0) -> int:
        """Ctrl-C: send SIGINT to the server and return its exit code once it has stopped."""
        import signal

        self._proc.send_signal(signal.SIGINT)
        return self._proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def launch_browser(playwright):
    """Headless Debian Chromium through Playwright."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def wait_idle(page, timeout: float = 240.0, quiet: float = 1.0) -> float:
    """Wait until no running indicator, spinner or skeleton has been seen for ``quiet`` seconds.

    Returns the seconds waited until the page went quiet (``quiet`` not included).
    """
    start = time.time()
    last_busy = start
    page.wait_for_timeout(150)  # let a just-sent rerun reach the server and show its status widget
    while True:
        now = time.time()
        if page.locator(BUSY).count():
            last_busy = now
        elif now - last_busy >= quiet:
            return last_busy - start
        if now - start > timeout:
            raise TimeoutError(f"page still busy after {timeout:.0f} s")
        page.wait_for_timeout(100)


def eventually(page, check, timeout: float = 60.0, what: str = "condition"):
    """Poll ``check()`` until it returns something truthy (a rerun's result can land after the page looks idle)."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError(f"{what} not met after {timeout:.0f} s (last: {value!r})")
        page.wait_for_timeout(300)


def open_page(page, url: str, timeout: float = 300.0) -> float:
    """Load ``url`` and wait until the app has drawn it and gone idle; returns the seconds it took."""
    start = time.time()
    page.goto(url)
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=timeout * 1000)
    wait_idle(page, timeout)
    return time.time() - start


def assert_clean(page) -> None:
    """No uncaught exception and no error box on the page."""
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.first.inner_text()


def widget(page, kind: str, label: str):
    """The widget of ``kind`` (e.g. "stSelectbox") whose label contains ``label``."""
    return page.locator(f'[data-testid="{kind}"]').filter(
        has=page.locator('[data-testid="stWidgetLabel"]', has_text=label)).first


def chosen(page, kind: str, label: str, option: str) -> bool:
    """Whether the select box called ``label`` shows ``option`` (or the multiselect has it among its tags)."""
    if kind == "stMultiSelect":
        return selected_tags(page, label).filter(has_text=option).count() > 0
    box = widget(page, kind, label).locator('input[role="combobox"]')
    return box.count() > 0 and box.input_value() == option


def choose(page, kind: str, label: str, option: str, tries: int = 3) -> None:
    """Pick ``option`` in a select box (or add it to a multiselect), and check that the pick took.

    Headless Chromium now and then drops the click on an option (seen in CI and locally, in one tab or with two
    open), so the pick is repeated, up to ``tries`` times, until the widget shows it.
    """
    for _ in range(tries):
        widget(page, kind, label).locator('[role="combobox"]').click()
        page.get_by_role("option", name=option, exact=True).click()
        if kind == "stMultiSelect":
            page.keyboard.press("Escape")
        try:
            eventually(page, lambda: chosen(page, kind, label, option), timeout=5, what=f"{label} = {option}")
            return
        except TimeoutError:
            wait_idle(page)  # a rerun may have replaced the widget under the click: pick again once it is done
    raise AssertionError(f"{label!r} does not show {option!r} after {tries} picks")


def press_slider(page, label: str, *keys: str) -> None:
    """Press keys (Home, End, arrows) on the slider called ``label``: the way its value moves reliably."""
    handle = widget(page, "stSlider", label).locator('input[type="range"]').first
    handle.focus()
    for key in keys:
        handle.press(key)


def selected_tags(page, label: str):
    """The chosen values of the multiselect called ``label``, as a locator of its tags."""
    return widget(page, "stMultiSelect", label).locator(".react-aria-ComboBox [data-tag]")


def pick_radio(page, label: str, option: str) -> None:
    """Choose ``option`` of the ``st.radio`` called ``label`` (its text is what a person clicks)."""
    widget(page, "stRadio", label).get_by_text(option, exact=True).click()


def goto_page(page, title: str) -> None:
    """Follow the sidebar's navigation link to the page called ``title``."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()

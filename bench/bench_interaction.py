"""Interaction speed of the app in a real browser: first views and the time from each interaction to idle.

    python -m bench.bench_interaction [--out bench/results/interaction.md]

Starts ``streamlit run app.py`` on a free port with a fresh GENREG_HOME, drives it in headless Chromium
(Playwright) the way a person does, and prints one table measured in this run. "Idle" is the last moment a
running indicator, spinner or skeleton was seen before a quiet second (polled every ~0.1 s, so times under
about 0.2 s mean "no visible work"). Run it on an
otherwise idle machine: a concurrent CPU-heavy process slows torch 5-15x.

Targets (issue 8): a view change that needs no new computation under 0.3 s; Feature space first view under
5 s; first UMAP under 5 s. UMAP runs in the background while the page shows PCA, so the first UMAP has two rows:
until the page is usable again (PCA and a notice drawn) and until the UMAP itself is drawn.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.driver import (
    AppServer,
    choose,
    goto_page,
    launch_browser,
    open_page,
    press_slider,
    wait_idle,
)


def measure(page, base: str) -> list[tuple[str, str, float, str]]:
    """(page, action, seconds, target) rows, in the order a person would do them."""
    rows = []

    def timed(page_name: str, action: str, target: str, fn) -> None:
        start = time.time()
        fn()
        acted = time.time() - start
        rows.append((page_name, action, acted + wait_idle(page, timeout=900), target))
        print(f"{page_name:22s} {action:45s} {rows[-1][2]:7.2f} s", flush=True)

    timed("Home", "first view (cold server: loads the models)", "", lambda: open_page(page, base, 900))
    timed("Feature space", "first view straight after Home (20 per class, DDIM 25; Home starts it)", "< 5 s",
          lambda: goto_page(page, "Feature space"))
    timed("Feature space", "color by class", "< 0.3 s", lambda: choose(page, "stSelectbox", "Color by", "class"))
    timed("Feature space", "class filter", "< 0.3 s", lambda: choose(page, "stMultiSelect", "Classes", "3"))
    timed("Feature space", "Compute again, same settings", "< 0.3 s",
          lambda: page.get_by_role("button", name="Compute").click())

    def first_umap() -> None:  # two marks from one action: the page usable again, the UMAP drawn
        umap_title = page.locator(".gtitle", has_text="UMAP of")
        start = time.time()
        choose(page, "stSelectbox", "Method", "UMAP")
        page.get_by_text("in the background").or_(umap_title).first.wait_for(timeout=900_000)
        rows.append(("Feature space", "first UMAP: page usable (PCA shown meanwhile)", time.time() - start, "< 5 s"))
        umap_title.wait_for(timeout=900_000)
        rows.append(("Feature space", "first UMAP: drawn", time.time() - start, ""))
        for row in rows[-2:]:
            print(f"{row[0]:22s} {row[1]:45s} {row[2]:7.2f} s", flush=True)

    first_umap()
    wait_idle(page, timeout=900)
    timed("Feature space", "color by source (UMAP shown)", "< 0.3 s",
          lambda: choose(page, "stSelectbox", "Color by", "source"))
    timed("Feature space", "back to PCA (cached)", "< 0.3 s", lambda: choose(page, "stSelectbox", "Method", "PCA"))
    timed("Reverse start step", "first view (10 images, grid of 11 t)", "",
          lambda: goto_page(page, "Reverse start step"))
    timed("Reverse start step", "new t (one reconstruction)", "", lambda: press_slider(page, "Start step t", "End"))
    timed("Reverse start step", "an already computed t", "< 0.3 s", lambda: press_slider(page, "Start step t", "Home"))
    timed("Reverse start step", "an already computed t, again", "< 0.3 s",
          lambda: press_slider(page, "Start step t", "End"))
    timed("Feature space", "revisit", "< 0.3 s", lambda: goto_page(page, "Feature space"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, AppServer(Path(home)) as server, sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_context(viewport={"width": 1400, "height": 2400}).new_page()
        page.set_default_timeout(600_000)
        rows = measure(page, server.url)
        browser.close()
    lines = ["| page | interaction | seconds to idle | target |", "|---|---|---|---|"]
    lines += [f"| {p} | {a} | {s:.2f} | {t} |" for p, a, s, t in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()

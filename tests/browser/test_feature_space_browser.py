"""Feature space in a real browser: a session of view changes, recomputes, selections and navigation."""

import re

from tests.browser.driver import assert_clean, choose, goto_page, open_page, wait_idle, widget

CHART = '[data-testid="stPlotlyChart"]'


def _metric_values(page) -> list[str]:
    """The whole set's five metrics (a selection adds its own five below them)."""
    return page.locator('[data-testid="stMetricValue"]').all_inner_texts()[:5]


def _lasso_select(page) -> None:
    """Draw a lasso (the chart's drag mode) around the middle of the scatter's plot area."""
    box = page.locator(CHART).first.locator(".nsewdrag").first.bounding_box()
    corners = [(0.15, 0.15), (0.85, 0.15), (0.85, 0.85), (0.15, 0.85), (0.15, 0.16)]
    points = [(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy) for fx, fy in corners]
    page.mouse.move(*points[0])
    page.mouse.down()
    for (xa, ya), (xb, yb) in zip(points, points[1:]):
        for i in range(1, 6):
            page.mouse.move(xa + (xb - xa) * i / 5, ya + (yb - ya) * i / 5)
    page.mouse.up()


def test_feature_space_survives_a_session(page, app):
    open_page(page, app.url + "/feature_space")
    assert_clean(page)
    metrics = _metric_values(page)
    assert len(metrics) == 5 and page.locator(CHART).count() == 2

    choose(page, "stSelectbox", "Color by", "class")  # a view change replays the cached computation
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).first.locator(".legendtext", has_text="real · 0").count() == 1
    assert page.locator(CHART).first.locator(".xtitle", has_text="PC 1").count() == 1

    page.get_by_role("button", name="Compute").click()  # the same settings again
    wait_idle(page)
    assert_clean(page)
    assert _metric_values(page) == metrics

    choose(page, "stMultiSelect", "Classes", "3")  # the class filter fades the rest, keeps every point
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).first.locator(".legendtext", has_text="other classes").count() == 1

    _lasso_select(page)
    wait_idle(page)
    assert_clean(page)
    assert page.get_by_text(re.compile(r"\(\d+ selected\)")).count() >= 1
    assert page.locator('[data-testid="stImage"]').count() >= 1
    assert page.get_by_text("Metrics of the selection", exact=False).count() == 1
    assert page.get_by_text("Keeping", exact=False).count() == 1  # the curation panel counts what it keeps

    choose(page, "stSelectbox", "Method", "UMAP")  # computed in the background while PCA stays on screen
    page.get_by_text("in the background").or_(page.locator(".xtitle", has_text="UMAP 1")).first.wait_for()
    assert_clean(page)
    assert page.locator(CHART).count() == 2
    page.locator(CHART).first.locator(".xtitle", has_text="UMAP 1").wait_for(timeout=180_000)
    wait_idle(page)
    assert_clean(page)
    assert page.get_by_text("in the background").count() == 0
    choose(page, "stSelectbox", "Method", "PCA")
    wait_idle(page)
    assert page.locator(CHART).first.locator(".xtitle", has_text="PC 1").count() == 1

    page.get_by_role("radio", name="reconstruction from t").click()  # a new source computes nothing yet
    wait_idle(page)
    assert_clean(page)
    assert widget(page, "stSlider", "Start step t").count() == 1
    assert page.get_by_text("press Compute", exact=False).count() == 1
    assert _metric_values(page) == metrics

    goto_page(page, "Home")
    wait_idle(page)
    goto_page(page, "Feature space")
    wait_idle(page)
    assert_clean(page)
    assert _metric_values(page) == metrics and page.locator(CHART).count() == 2


def test_two_tabs_at_once_share_one_computation(page, browser, app):
    """Two tabs press Compute on the same new settings at once: one computation serves both (the shared
    background projection job is tested without a browser, in tests/app)."""
    other = browser.new_context(viewport={"width": 1400, "height": 2400}).new_page()
    other.set_default_timeout(60_000)
    tabs = (page, other)
    try:
        for tab in tabs:
            open_page(tab, app.url + "/feature_space")
        before = _metric_values(page)
        for tab in tabs:  # new settings in both, submitted one right after the other
            widget(tab, "stNumberInput", "Seed").locator("input").fill("3")
        for tab in tabs:
            tab.get_by_role("button", name="Compute").click()
        for tab in tabs:
            wait_idle(tab)
            assert_clean(tab)
        assert _metric_values(page) == _metric_values(other) and len(_metric_values(page)) == 5
        assert _metric_values(page) != before  # a new seed: new synthetic samples
    finally:
        other.context.close()

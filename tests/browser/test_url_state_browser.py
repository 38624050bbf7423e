"""Links restore a page's view in a real browser; hostile links are shown with a notice, never an exception."""

import urllib.parse

from tests.browser.driver import assert_clean, open_page, widget

NOTICE = "Ignored in this page's link"


def _slider_value(page, label: str) -> str:
    return widget(page, "stSlider", label).locator('[data-testid="stSliderThumbValue"]').first.inner_text()


def _select_value(page, label: str) -> str:
    """A select box's shown choice (in its combobox input, or as text beside it)."""
    box = widget(page, "stSelectbox", label)
    inputs = box.locator("input")
    return (inputs.first.input_value() if inputs.count() else "") + " " + box.inner_text()


def test_a_crafted_link_opens_the_feature_space_view(page, app):
    open_page(page, app.url + "/feature_space?source=reconstruct&t=300&n=10&steps=3&k=3&color=class&seed=4")
    assert_clean(page)
    assert _slider_value(page, "Start step t") == "300"
    assert _slider_value(page, "Images per class") == "10"
    assert "class" in _select_value(page, "Color by")
    assert page.locator(".legendtext", has_text="real · 0").count() == 1  # the chart is coloured by class
    assert widget(page, "stNumberInput", "Seed").locator("input").input_value() == "4"
    assert page.get_by_text("k = 3", exact=False).count() >= 1  # computed with the link's settings
    assert page.get_by_text(NOTICE).count() == 0
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert query["t"] == ["300"] and query["color"] == ["class"]  # the URL mirrors the controls


def test_a_hostile_link_is_shown_with_a_notice(page, app):
    hostile = {"t": "-5", "steps": "1e99", "sampler": "../../x", "guidance": "✓", "seed": "9" * 10_000,
               "run": "../../x"}
    open_page(page, app.url + "/reverse_step?" + urllib.parse.urlencode(hostile))
    assert_clean(page)
    notice = page.get_by_text(NOTICE, exact=False)
    assert notice.count() == 1
    text = notice.first.inner_text()
    assert "t='-5'" in text and "10,000 characters" in text and "unknown key 'run'" in text
    assert _slider_value(page, "Start step t") == "500"  # the default, T / 2


def test_a_replay_link_opens_its_run_and_epoch(page, app):
    run_id = app.runs["adarand"]
    open_page(page, app.url + f"/reference_vectors?run={run_id}&epoch=1")
    assert_clean(page)
    assert run_id[:8] in _select_value(page, "AdaRand run")
    assert _slider_value(page, "Epoch") == "1"
    open_page(page, app.url + "/reference_vectors?run=..%2F..%2Fx&epoch=99")
    assert_clean(page)
    assert page.get_by_text(NOTICE, exact=False).count() == 1

"""Training runs, the two replay pages and Home in a real browser: launch, follow, stop, delete, replay, navigate."""

import re

from tests.browser.driver import (
    assert_clean,
    choose,
    eventually,
    goto_page,
    open_page,
    press_slider,
    selected_tags,
    wait_idle,
    widget,
)

CHART = '[data-testid="stPlotlyChart"]'



def _options(page, label: str) -> list[str]:
    """The option labels of a multiselect (opened and closed again)."""
    widget(page, "stMultiSelect", label).locator('[role="combobox"]').click()
    texts = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return texts


def test_training_runs_session(page, app):
    open_page(page, app.url + "/training_runs")
    assert_clean(page)
    choose(page, "stSelectbox", "Images per class", "5")
    press_slider(page, "Epochs", "Home", "ArrowRight")  # 2 epochs
    page.get_by_role("button", name="Launch", exact=True).click()  # CE and AdaRand, seed 0
    wait_idle(page)
    assert_clean(page)
    page.get_by_text("Summary: test accuracy at best validation loss").wait_for(timeout=240_000)
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).count() == 1
    compared = selected_tags(page, "Compare runs")
    assert compared.count() >= 2  # the new runs joined the comparison by themselves

    page.get_by_text("one run: no spread", exact=False).first.wait_for(state="attached")  # a dataframe cell
    earlier = set(_options(page, "Runs to stop or delete"))
    choose(page, "stSelectbox", "Images per class", "all")  # long runs to stop, even on a loaded machine
    press_slider(page, "Epochs", "End")
    page.get_by_role("button", name="Launch", exact=True).click()
    page.get_by_text("Launched 2 run(s).").wait_for(timeout=60_000)  # the launch's toast
    wait_idle(page)

    def launched() -> list[str]:
        new = [o for o in _options(page, "Runs to stop or delete") if o not in earlier]
        return new if len(new) >= 2 else []

    running = eventually(page, launched, what="the two launched runs in the picker")
    assert len(running) == 2, running
    for option in running:
        choose(page, "stMultiSelect", "Runs to stop or delete", option)
        wait_idle(page)
    main = page.locator('[data-testid="stMainBlockContainer"]')  # not the header's Stop (of the script)
    main.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("stopped", exact=True).first.wait_for(state="attached", timeout=120_000)  # a table cell
    wait_idle(page)
    assert_clean(page)

    before = len(_options(page, "Compare runs")) + compared.count()
    page.get_by_role("button", name="Delete…").click()
    page.get_by_text(re.compile(r"Delete \d+ run")).wait_for(timeout=60_000)  # asks before deleting
    wait_idle(page)
    assert page.get_by_text(re.compile(r"Delete \d+ run")).count() == 1
    page.get_by_role("button", name="Delete for good").click()
    wait_idle(page)
    assert_clean(page)
    def gone() -> bool:
        left = _options(page, "Compare runs") + compared.all_inner_texts()
        return len(left) == before - len(running) and not set(running) & set(left)

    eventually(page, gone, what="the deleted runs gone from the pickers")

    goto_page(page, "Home")
    wait_idle(page)
    assert page.locator('[data-testid="stImage"]').count() == 2
    goto_page(page, "Training runs")
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).count() == 1


def test_replay_pages_session(page, app):
    open_page(page, app.url + "/meta_latents")
    assert_clean(page)
    assert page.locator('[data-testid="stImage"]').count() == 2
    assert page.locator(CHART).count() == 5  # shift, beats-random share, scatter, losses, influence
    press_slider(page, "Epoch", "Home")
    wait_idle(page)
    assert_clean(page)
    assert page.locator('[data-testid="stImage"]').count() == 2

    goto_page(page, "AdaRand references")
    wait_idle(page)
    assert_clean(page)
    scatter = page.locator(CHART).first
    assert scatter.locator(".legendtext", has_text="μ̄ (running class mean)").count() == 1
    assert scatter.locator(".legendtext", has_text="reference z").count() == 1
    press_slider(page, "Epoch", "Home")
    wait_idle(page)
    press_slider(page, "Epoch", "End")
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).count() == 2

    goto_page(page, "Meta-selected latents")
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).count() == 5  # shift, beats-random share, scatter, losses, influence


def test_home_claims_session(page, app):
    open_page(page, app.url)
    assert_clean(page)
    assert page.locator('[data-testid="stImage"]').count() == 2  # real and generated grids
    claims = page.locator('[data-testid="stExpander"]')
    assert claims.count() == 7  # the seven claims, each with its numbers
    claims.nth(0).locator("summary").click()  # the numbers of the first claim, one line per setting
    assert claims.nth(0).locator("li").count() >= 2
    claims.nth(4).locator("summary").click()  # the reverse start step's claim
    assert claims.nth(4).get_by_text("coverage", exact=False).count() >= 1
    goto_page(page, "Reverse start step")
    wait_idle(page)
    goto_page(page, "Home")
    wait_idle(page)
    assert_clean(page)
    assert page.locator('[data-testid="stExpander"]').count() == 7

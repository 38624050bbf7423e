"""A 2-cell grid launched from the Training runs page in a real browser, followed to its end."""

from tests.browser.driver import assert_clean, choose, open_page, press_slider, wait_idle


def test_grid_launch_from_the_page_shows_its_progress(page, app):
    open_page(page, app.url + "/training_runs")
    assert_clean(page)
    choose(page, "stSelectbox", "Images per class", "5")
    press_slider(page, "Epochs", "Home", "ArrowRight")  # 2 epochs; CE and AdaRand, seed 0, 5 per class: 2 cells
    page.get_by_role("button", name="Launch grid").click()
    page.get_by_text("Launched a grid of 2 cell(s) on local.").wait_for(timeout=60_000)
    page.get_by_text("grid: ", exact=False).first.wait_for(timeout=60_000)  # the grid's progress line
    page.get_by_text("grid: 2 done / 0 running / 0 failed / 0 left").wait_for(timeout=300_000)
    wait_idle(page)
    assert_clean(page)
    assert page.get_by_text("Grid ", exact=False).count() >= 1

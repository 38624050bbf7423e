"""Reverse start step in a real browser: slider, sampler and navigation (tests/browser/test_fashion_browser.py
runs its sweep)."""

from tests.browser.driver import assert_clean, goto_page, open_page, pick_radio, press_slider, wait_idle

CHART = '[data-testid="stPlotlyChart"]'



def test_reverse_step_survives_a_session(page, app):
    open_page(page, app.url + "/reverse_step")
    assert_clean(page)
    images = page.locator('[data-testid="stImage"]').count()
    assert images >= 3

    press_slider(page, "Start step t", "End")  # t = T: generation from noise
    wait_idle(page)
    assert_clean(page)
    assert page.get_by_text("x_t at t = 1000", exact=False).count() == 1

    press_slider(page, "Start step t", "Home")  # t = 0 costs nothing, even with DDPM
    wait_idle(page)
    pick_radio(page, "Sampler", "DDPM")  # a cost warning; the slow grid waits to be asked for
    wait_idle(page)
    assert_clean(page)
    assert page.get_by_text("DDPM runs one network evaluation per step", exact=False).count() == 1
    assert page.get_by_text("Reconstruct the grid with DDPM", exact=False).count() == 1
    pick_radio(page, "Sampler", "DDIM")
    wait_idle(page)
    assert_clean(page)

    goto_page(page, "Feature space")
    wait_idle(page)
    goto_page(page, "Reverse start step")  # drawn again from the cache
    wait_idle(page)
    assert_clean(page)
    assert page.locator('[data-testid="stImage"]').count() == images
    assert page.locator(CHART).count() == 1  # the semantic perturbations (the Fashion-MNIST test runs a sweep)

"""Fashion-MNIST in a real browser: picked once in the sidebar, then Feature space, Reverse start step and a
Training run on it, on one page load; the choice survives navigation."""

import re

from genreg_core.runs.store import RunStore
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
FASHION = "Fashion-MNIST (bundled subset, 28×28)"
SEED = 16  # the run's seed: no other browser test launches it


def _metric_values(page) -> list[str]:
    return page.locator('[data-testid="stMetricValue"]').all_inner_texts()[:5]


def _on_fashion(page) -> None:
    """The sidebar names Fashion-MNIST and the loaded data is its bundled subset."""
    assert widget(page, "stSelectbox", "Dataset").locator("input").input_value() == FASHION
    assert page.locator('[data-testid="stSidebar"]').get_by_text("5,000 images: T-shirt/top 500", exact=False).count()


def test_fashion_mnist_session(page, app):
    open_page(page, app.url + "/feature_space?n=10&steps=5")  # a small first view (a link a teacher could send)
    assert_clean(page)
    digits = _metric_values(page)

    choose(page, "stSelectbox", "Dataset", FASHION)  # the same settings, now on Fashion-MNIST and its models
    wait_idle(page)
    assert_clean(page)
    _on_fashion(page)
    metrics = _metric_values(page)
    assert len(metrics) == 5 and metrics != digits
    assert page.get_by_text("100 real vs 100 synthetic", exact=False).count() == 1
    holes = page.get_by_text(re.compile(r"\d+ of 100 real images lie outside every synthetic sample"))
    assert "T-shirt/top" in holes.inner_text()  # the uncovered share per class, by Fashion-MNIST's names

    choose(page, "stSelectbox", "Color by", "class")
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).first.locator(".legendtext", has_text="real · Sneaker").count() == 1
    choose(page, "stSelectbox", "Fit on", "real ∪ synthetic")  # another projection of the same points
    eventually(page, lambda: "mode=union" in page.url, what="the Fit on rerun in the URL")  # it finished: the
    wait_idle(page)  # next pick must not land on widgets that rerun is still replacing
    choose(page, "stMultiSelect", "Classes", "Sneaker")  # one class stands out, the rest fade
    wait_idle(page)
    assert selected_tags(page, "Classes").filter(has_text="Sneaker").count() == 1
    assert_clean(page)
    eventually(page, lambda: page.locator(CHART).first.locator(".legendtext", has_text="other classes").count() == 1,
               what="the class filter's faded rest")  # the pick reaches the server after its rerun starts
    assert _metric_values(page) == metrics  # view changes compute nothing new

    goto_page(page, "Reverse start step")  # its first view: 10 images, a grid of 11 t, semantic perturbations
    wait_idle(page, timeout=600)
    assert_clean(page)
    _on_fashion(page)
    assert page.get_by_text(re.compile(r"sampler steps\)\. Classes: .*T-shirt/top")).count() == 1  # one image a class
    press_slider(page, "Start step t", "End")  # t = T: the reconstruction is a new sample
    wait_idle(page)
    assert_clean(page)
    assert page.get_by_text("x_t at t = 1000", exact=False).count() == 1
    press_slider(page, "Training images per class", "Home")  # a small sweep: 5 per class, t = 0, 500, 1000
    pills = widget(page, "stButtonGroup", "t values")
    for t in ("100", "200", "300", "400", "600", "700", "800", "900"):
        pills.get_by_role("button", name=t, exact=True).click()
    page.get_by_role("button", name="Run sweep").click()
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).count() == 4  # semantic perturbations, sweep curves, uncovered share, drift
    assert page.locator(CHART).filter(has_text="Fréchet distance").count() == 1  # the sweep curves, a panel a metric
    assert page.locator(CHART).filter(has_text="Coverage holes").count() == 1  # the uncovered share over t
    assert page.get_by_text(re.compile(r"At t = 1000, \d+ of 50 real images lie outside")).count() == 1

    goto_page(page, "Training runs")
    wait_idle(page)
    assert_clean(page)
    methods = widget(page, "stMultiSelect", "Methods")
    methods.locator("[data-tag]", has_text="adarand").get_by_role("button").click()  # CE alone
    choose(page, "stSelectbox", "Images per class", "5")
    press_slider(page, "Epochs", "Home")  # 1 epoch
    widget(page, "stTextInput", "Seeds").locator("input").fill(str(SEED))
    page.get_by_role("button", name="Launch", exact=True).click()
    page.get_by_text("Launched 1 run(s).").wait_for()
    store = RunStore(app.home)
    run = eventually(page, lambda: next((r for r in store.list_runs() if r.seed == SEED), None), what="the run")
    assert store.load_spec(run.run_id).data.name == "fashion-mnist"
    eventually(page, lambda: store.summary(run.run_id).status == "finished", timeout=180, what="the run finished")
    page.get_by_text(f"ce-5pc-s{SEED}", exact=True).first.wait_for(state="attached")  # a cell of the run table
    page.get_by_text("fashion-mnist", exact=True).first.wait_for(state="attached")  # its dataset, in the tables
    wait_idle(page)
    assert_clean(page)
    assert selected_tags(page, "Compare runs").filter(has_text=f"ce-5pc-s{SEED}").count() == 1  # followed

    goto_page(page, "Feature space")  # the dataset, the settings and the result are all still there
    wait_idle(page)
    assert_clean(page)
    _on_fashion(page)
    assert _metric_values(page) == metrics
    goto_page(page, "Reverse start step")  # the sweep is still there, from the cache
    wait_idle(page)
    assert_clean(page)
    assert page.locator(CHART).count() == 4

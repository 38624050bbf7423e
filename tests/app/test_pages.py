"""Every page runs under AppTest on the shipped models and shows what it should."""

import dataclasses
import json

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest


@pytest.fixture(autouse=True)
def _clear_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _label(at, key: str, run_id: str) -> str:
    """The option of run picker ``key`` that names ``run_id`` (pickers offer labels, not ids)."""
    (label,) = [o for o in at.multiselect(key=key).options if run_id[:8] in o]
    return label


def test_app_opens_on_home_with_real_and_generated_grids():
    at = AppTest.from_file("../../app.py", default_timeout=120).run()  # the navigation's default page
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("genreg")
    headers = [h.value for h in at.subheader]
    assert "Real (training split)" in headers and any(h.startswith("Generated") for h in headers)
    assert len(at.get("image")) == 2
    assert "Feature extractor test accuracy" in at.caption[0].value


def test_bad_image_folder_shows_error(tmp_path):
    at = AppTest.from_file("../../app_pages/home.py", default_timeout=60)
    at.session_state["genreg.dataset"] = "folder"
    at.session_state["genreg.folder"] = str(tmp_path / "missing")
    at.run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_feature_space_page_shows_chart_metrics_and_selection():
    at = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=180)
    at.session_state["fs.per_class"] = 10
    at.session_state["fs.steps"] = 3
    at.run()
    assert not at.exception, at.exception
    assert [m.label for m in at.metric][:4] == ["Precision", "Recall", "Density", "Coverage"]
    assert all(0 <= float(m.value) for m in at.metric)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the scatter and the per-class bars
    frames = at.dataframe
    assert len(frames) == 1 and list(frames[0].value["class"])[0] == "all" and len(frames[0].value) == 11
    assert any("Select points" in c.value for c in at.caption)


def test_reverse_step_page_shows_grids_and_sweep_curves():
    from genreg_core.analysis.reverse_step import SweepConfig
    from genreg_core.config import SamplerConfig

    at = AppTest.from_file("../../app_pages/reverse_step.py", default_timeout=180)
    at.session_state["rs.steps"] = 3
    at.session_state["rs.sem_steps"] = 2
    at.session_state["rs.sweep_config"] = SweepConfig(t_values=(0, 500, 1000), per_class=3, k=2,
                                                      sampler=SamplerConfig(n_steps=3))
    at.run()
    assert not at.exception, at.exception
    images = at.get("image")
    assert len(images) >= 3  # original/x_t/reconstruction rows, the t-sweep grid, the x̂₀ trajectory
    charts = [c.key for c in at.get("plotly_chart")]  # p(ŷ) over ε, sweep curves, uncovered share over t, drift
    assert charts == ["rs.sem_probs", "rs.curves", "rs.uncovered", "rs.drift"]
    assert list(at.dataframe[0].value["t"]) == [0, 500, 1000]
    assert at.dataframe[0].value["mse"].iloc[0] == 0


def test_reverse_step_page_shows_semantic_perturbations_for_growing_eps():
    at = AppTest.from_file("../../app_pages/reverse_step.py", default_timeout=180)
    at.session_state["rs.steps"] = 3
    at.session_state["rs.sem_steps"] = 2
    at.session_state["rs.sem_kind"] = "adv"
    at.session_state["rs.sem_max"] = 0.4
    at.run()
    assert not at.exception, at.exception
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert any("round trip (ε = 0) · ε = 0.1, 0.2, 0.3, 0.4" in c for c in captions)
    assert len(at.get("plotly_chart")) == 1  # p(ŷ) over ε (no sweep run yet)
    assert len(json.loads(at.get("plotly_chart")[0].proto.spec)["data"]) == 8  # one p(ŷ) curve per image (≤ 8)
    assert any(c.value.startswith("RMS of Δz per ε") for c in at.caption)


def test_reverse_step_page_rejects_bad_indices():
    at = AppTest.from_file("../../app_pages/reverse_step.py", default_timeout=60)
    at.session_state["rs.pick"] = "by index"
    at.session_state["rs.ids"] = "1, 99999"
    at.run()
    assert not at.exception
    assert any("comma-separated integers" in e.value for e in at.error)


def test_training_runs_page_launches_lists_and_summarizes(monkeypatch, tmp_path):
    calls = []

    def fake_launch(store, spec, max_concurrent=2):
        run_id = store.create_run(spec)
        for epoch in (1, 2):
            store.client.log_metric(run_id, "val_loss", 1.0 / epoch, step=epoch)
            store.client.log_metric(run_id, "epoch", epoch, step=epoch)
        store.client.log_metric(run_id, "test_accuracy_at_best", 0.8 + 0.01 * spec.train.seed, step=0)
        store.client.set_terminated(run_id, "FINISHED")
        calls.append((spec.train.method, spec.train.seed, spec.train.per_class, max_concurrent))
        return run_id

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", fake_launch)
    from genreg_core.runs.store import RunStore

    store = RunStore(tmp_path / "store")  # a store of its own: other tests' runs share the session's
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: store)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not at.exception, at.exception
    at.multiselect(key="tr.methods").set_value(["ce", "mgr"])
    at.text_input(key="tr.seeds").set_value("0, 1")
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, at.exception
    assert sorted(calls) == [("ce", 0, 10, 2), ("ce", 1, 10, 2), ("mgr", 0, 10, 2), ("mgr", 1, 10, 2)]
    runs_table, summary = at.dataframe[0].value, at.dataframe[1].value
    assert len(runs_table) == 4 and set(runs_table["status"]) == {"finished"}
    assert list(summary["method"]) == ["ce", "mgr"] and list(summary["runs"]) == [2, 2]
    assert set(runs_table["dataset"]) == set(summary["dataset"]) == {"digits"}
    assert set(summary["generator"]) == {"shipped"}
    assert summary["test accuracy"].iloc[0] == "80.50% ± 0.71%"  # 0.80 and 0.81: sample std 0.01 / √2
    assert any("ddof = 1" in caption.value for caption in at.caption)  # the table says which std it is
    assert len(at.get("plotly_chart")) == 1


def test_training_runs_page_launches_the_latent_methods_with_their_parameters(monkeypatch):
    specs = []

    def fake_launch(store, spec, max_concurrent=2):
        specs.append(spec.train)
        return "x"

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", fake_launch)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not at.exception, at.exception
    at.multiselect(key="tr.methods").set_value(["semantic", "gssl"])
    at.selectbox(key="tr.sem_kind").set_value("adv")
    at.number_input(key="tr.sem_eps").set_value(0.1)
    at.number_input(key="tr.gssl_sim").set_value(0.5)
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, at.exception
    assert sorted(t.method for t in specs) == ["gssl", "semantic"]
    assert all(t.semantic.perturbation == "adv" and t.semantic.eps == 0.1 and t.gssl.sim_weight == 0.5 for t in specs)
    assert all(t.semantic.tau == 500 and t.semantic.ratio == 0.5 for t in specs)


def test_training_runs_page_rejects_bad_seeds():
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    at.text_input(key="tr.seeds").set_value("zero")
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception
    assert any("integer seeds" in e.value for e in at.error)


def test_a_run_launched_in_one_tab_is_stopped_from_another(monkeypatch):
    launched = []

    def queue_only(store, spec, max_concurrent=2):  # a queued run whose worker has not started yet
        launched.append(store.create_run(spec))
        return launched[-1]

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", queue_only)
    first = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    first.multiselect(key="tr.methods").set_value(["adarand"])
    next(b for b in first.button if b.label == "Launch").click()
    first.run()
    second = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not second.exception, second.exception
    table = second.dataframe[0].value
    assert table.set_index("run_id").loc[launched[0], "status"] == "queued"
    second.multiselect(key="tr.act").set_value([_label(second, "tr.act", launched[0])]).run()
    second.button(key="tr.stop").click()
    second.run()
    first.run()
    assert first.dataframe[0].value.set_index("run_id").loc[launched[0], "status"] == "stopped"


def test_training_runs_page_real_tiny_run_end_to_end():
    import time

    from genreg_core.runs.store import RunStore

    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    at.multiselect(key="tr.methods").set_value(["ce"])
    at.selectbox(key="tr.per_class").set_value(5)
    at.slider(key="tr.epochs").set_value(2)
    at.text_input(key="tr.seeds").set_value("7")
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, at.exception
    store = RunStore()
    run = next(r for r in store.list_runs() if r.method == "ce" and r.seed == 7)
    deadline = time.time() + 180
    while store.summary(run.run_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
    at.run()
    row = at.dataframe[0].value.set_index("run_id").loc[run.run_id]
    assert row["status"] == "finished", (store.run_dir(run.run_id) / "worker.log").read_text()
    assert 0 < row["test_accuracy"] <= 1


def test_reverse_step_page_on_an_image_folder(tmp_path):
    from PIL import Image

    from genreg_core.data.datasets import load_digits_dataset
    from genreg_core.imaging import make_grid

    digits = load_digits_dataset(16)
    for c in range(10):
        (tmp_path / str(c)).mkdir()
        for i, image in enumerate(digits.images[digits.labels == c][:6]):
            Image.fromarray(make_grid(image[None], 1, pad=0)).save(tmp_path / str(c) / f"{i}.png")
    at = AppTest.from_file("../../app_pages/reverse_step.py", default_timeout=240)
    at.session_state["genreg.dataset"] = "folder"
    at.session_state["genreg.folder"] = str(tmp_path)
    at.session_state["rs.steps"] = 3
    at.session_state["rs.sem_steps"] = 2
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("image")) >= 3
    assert "0, 1, 2" in at.get("image")[0].proto.imgs[0].caption


@pytest.fixture(scope="module")
def replay_runs():
    """Real tiny AdaRand, MGR and GSSL runs in the tests' run store, by their run-picker labels."""

    from genreg_app.runs import run_label
    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.runs.store import RunSpec, RunStore
    from genreg_core.runs.worker import execute_run

    store = RunStore()
    ids = {}
    for method in ("adarand", "mgr", "gssl"):
        spec = RunSpec(dataclasses.replace(TrainConfig.tiny(method), epochs=2), DataConfig(), None, "cpu")
        ids[method] = store.create_run(spec)
        execute_run(store, ids[method])
    labels = {r.run_id: run_label(r) for r in store.list_runs()}
    return {method: labels[run_id] for method, run_id in ids.items()}


def test_reference_vectors_page_replays_an_adarand_run(replay_runs):
    at = AppTest.from_file("../../app_pages/reference_vectors.py", default_timeout=120)
    at.session_state["rv.run"] = replay_runs["adarand"]
    at.run()
    assert not at.exception, at.exception
    assert at.slider(key="rv.epoch").value == 2
    assert len(at.get("plotly_chart")) == 2
    assert list(at.dataframe[0].value["epoch"]) == [1, 2]
    at.slider(key="rv.epoch").set_value(1).run()
    assert not at.exception


def test_meta_latents_page_shows_random_vs_selected(replay_runs):
    at = AppTest.from_file("../../app_pages/meta_latents.py", default_timeout=120)
    at.session_state["ml.run"] = replay_runs["mgr"]
    at.run()
    assert not at.exception, at.exception
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert any(c.startswith("random latents") for c in captions)
    assert any(c.startswith("meta-selected") for c in captions)
    assert list(at.dataframe[0].value["samples"]) == ["selected", "random"]
    assert len(at.get("plotly_chart")) == 5  # shift and beats-random per epoch, scatter, losses, influence
    assert any("The finder has not moved" in w.value for w in at.warning)  # default finder lr, 2 tiny epochs


def test_training_runs_page_launches_own_regime_and_teaching_runs(monkeypatch):
    specs = []

    def fake_launch(store, spec, max_concurrent=2):
        specs.append(spec)
        run_id = store.create_run(spec)
        store.client.set_tag(run_id, "genreg.generator_progress", "120/1200")
        return run_id

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", fake_launch)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    at.multiselect(key="tr.methods").set_value(["mgr"])
    at.selectbox(key="tr.regime").set_value("own")
    at.checkbox(key="tr.mgr_teaching").check()
    at.text_input(key="tr.seeds").set_value("41")
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, at.exception
    (spec,) = specs
    assert spec.train.generator_regime == "own" and spec.train.mgr.finder_lr == 3e-2 and spec.train.mgr.meta_steps == 3
    row = at.dataframe[0].value.set_index("seed").loc[41]
    assert row["generator_regime"] == "own" and row["generator_progress"] == "120/1200"


def test_home_page_shows_the_claims_table_with_page_links():
    at = AppTest.from_file("../../app_pages/home.py", default_timeout=240).run()
    assert not at.exception, at.exception
    claims = at.dataframe[0].value
    assert len(claims) == 7 and set(claims["verdict"]) <= {"reproduced", "not reproduced", "reversed", "inconclusive"}
    assert set(claims["see it on"]) <= {"/training_runs", "/meta_latents", "/reference_vectors", "/reverse_step"}
    from pathlib import Path

    saved = json.loads((Path(__file__).parents[2] / "genreg_core/analysis/claims.json").read_text())
    saved = saved["datasets"]["digits"]["claims"]
    assert any("judged on **digits**" in c.value for c in at.caption)
    assert [e.label.split(" — ")[0] for e in at.expander] == [c["claim"] for c in saved]
    assert saved[0]["numbers"].split("; ")[0] in at.expander[0].markdown[0].value  # each setting on its own line
    assert any("whole labelled training split" in c.value for c in at.caption)


def test_meta_latents_page_shows_gssl_initial_vs_optimized(replay_runs):
    at = AppTest.from_file("../../app_pages/meta_latents.py", default_timeout=120)
    at.session_state["ml.run"] = replay_runs["gssl"]
    at.run()
    assert not at.exception, at.exception
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert any(c.startswith("initial z₀") for c in captions) and any(c.startswith("optimized z") for c in captions)
    assert list(at.dataframe[0].value["samples"]) == ["selected", "random"]
    charts = {c.key for c in at.get("plotly_chart")}
    assert charts == {"ml.shift", "ml.share", "ml.scatter", "ml.losses", "ml.influence"}


def test_replay_pages_offer_a_launch_without_runs(monkeypatch, tmp_path):
    from genreg_core.runs.store import RunStore

    empty = RunStore(tmp_path / "empty")
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: empty)
    for page, key in (("reference_vectors.py", "rv.run.launch"), ("meta_latents.py", "ml.run.launch")):
        at = AppTest.from_file(f"../../app_pages/{page}", default_timeout=120).run()
        assert not at.exception, at.exception
        assert at.info and at.button(key=key).label.startswith("Launch a 10-per-class")


def _count_feature_space_computations(monkeypatch) -> list:
    import genreg_app.feature_space as fs

    calls = []
    real = fs.compute_feature_space
    monkeypatch.setattr(fs, "compute_feature_space", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_home_computes_the_feature_space_first_view_ahead_of_time(monkeypatch):
    import dataclasses
    import time

    import genreg_app.feature_space as fs

    real_first = fs.first_view_config
    monkeypatch.setattr(fs, "first_view_config", lambda lab: dataclasses.replace(  # small and unique to this test
        real_first(lab), per_class=10, seed=11, sampler=dataclasses.replace(real_first(lab).sampler, n_steps=2)))
    calls = _count_feature_space_computations(monkeypatch)
    home = AppTest.from_file("../../app_pages/home.py", default_timeout=120).run()
    assert not home.exception, home.exception
    deadline = time.time() + 60
    while not calls and time.time() < deadline:  # Home started it with nobody on Feature space yet
        time.sleep(0.1)
    assert len(calls) == 1
    page = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=120).run()
    assert not page.exception, page.exception
    assert page.slider(key="fs.per_class").value == 10 and page.number_input(key="fs.seed").value == 11
    assert len(calls) == 1  # the page's first view is the result Home started, not a second computation
    assert page.caption[0].value.startswith("100 real vs 100 synthetic")


def test_feature_space_survives_reruns_and_computes_only_on_submit(monkeypatch):
    calls = _count_feature_space_computations(monkeypatch)
    at = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=180)
    at.session_state["fs.per_class"] = 10
    at.session_state["fs.steps"] = 2
    at.session_state["fs.seed"] = 7
    at.run()
    assert not at.exception, at.exception
    assert len(calls) == 1
    at.selectbox(key="fs.color").set_value("class").run()  # a view change replays the cached result
    assert not at.exception, at.exception
    at.multiselect(key="fs.classes").set_value([3]).run()
    assert not at.exception, at.exception
    next(b for b in at.button if b.label == "Compute").click().run()  # the same settings again
    assert not at.exception, at.exception
    at.session_state["fs.source"] = "reconstruct"  # a new source waits for the form
    at.run()
    assert not at.exception, at.exception
    assert at.slider(key="fs.t").value == 500
    assert any("press **Compute**" in c.value for c in at.caption)
    assert len(calls) == 1
    assert len(at.dataframe[0].value) == 11


def test_feature_space_shows_pca_while_a_slow_projection_runs_in_the_background(monkeypatch):
    import threading
    import time

    import genreg_core.evaluation.projection as projection

    gate, real = threading.Event(), projection.project

    def gated(*args, **kwargs):  # t-SNE waits until the test lets it go; PCA passes
        if args[2] != "pca":
            assert gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(projection, "project", gated)
    at = AppTest.from_file("../../app_pages/feature_space.py", default_timeout=180)
    at.session_state["fs.per_class"] = 10
    at.session_state["fs.steps"] = 2
    at.session_state["fs.seed"] = 11
    at.run()
    title = lambda: json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]  # noqa: E731
    at.selectbox(key="fs.method").set_value("tsne").run()
    assert not at.exception, at.exception
    assert any("in the background" in i.value for i in at.info)
    assert title().startswith("PCA of")  # the page is usable at once, on PCA
    at.selectbox(key="fs.color").set_value("class").run()  # a view change while the job runs
    assert not at.exception and title().startswith("PCA of")
    gate.set()
    for _ in range(120):
        at.run()
        if not at.info:
            break
        time.sleep(0.5)
    assert not at.exception, at.exception
    assert title().startswith("t-SNE of") and not at.info
    at.selectbox(key="fs.method").set_value("pca").run()
    at.selectbox(key="fs.method").set_value("tsne").run()  # computed once per server: no second wait
    assert title().startswith("t-SNE of") and not at.info


def test_training_runs_follow_new_runs_and_delete_only_what_is_confirmed(monkeypatch, tmp_path):
    from genreg_core.runs.store import RunStore

    def fake_launch(store, spec, max_concurrent=2):
        run_id = store.create_run(spec)
        store.client.log_metric(run_id, "epoch", 1, step=1)
        store.client.log_metric(run_id, "val_loss", 1.0, step=1)
        store.client.log_metric(run_id, "test_accuracy_at_best", 0.9, step=0)
        store.client.set_terminated(run_id, "FINISHED")
        return run_id

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", fake_launch)
    store = RunStore(tmp_path / "store")  # a store of its own: other tests' runs share the session's
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: store)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    launch = lambda method, seed: (at.multiselect(key="tr.methods").set_value([method]),  # noqa: E731
                                   at.text_input(key="tr.seeds").set_value(seed),
                                   next(b for b in at.button if b.label == "Launch").click(), at.run())
    launch("ce", "0")
    first = store.list_runs()[0].run_id
    label = {run_id: _label(at, "tr.compare", run_id) for run_id in [first]}
    assert at.multiselect(key="tr.compare").value == [label[first]]
    summary = at.dataframe[1].value
    assert summary["test accuracy"].iloc[0] == "90.00% (one run: no spread)"
    assert list(at.dataframe[0].value["error"]) == [""] and list(at.dataframe[0].value["generator_progress"]) == [""]
    launch("randreg", "0")  # a run launched later joins the comparison by itself
    second = next(r.run_id for r in store.list_runs() if r.run_id != first)
    label[second] = _label(at, "tr.compare", second)
    assert set(at.multiselect(key="tr.compare").value) == {label[first], label[second]}
    at.multiselect(key="tr.compare").set_value([label[second]]).run()  # a run removed by hand stays removed
    assert at.multiselect(key="tr.compare").value == [label[second]]

    at.multiselect(key="tr.act").set_value([label[first]]).run()
    at.button(key="tr.delete").click().run()
    assert not at.exception, at.exception
    assert any("Delete 1 run" in w.value for w in at.warning)
    assert len(store.list_runs()) == 2  # nothing deleted before the confirmation
    at.button(key="tr.delete_confirm").click().run()
    assert not at.exception, at.exception
    assert [r.run_id for r in store.list_runs()] == [second]
    assert at.multiselect(key="tr.act").value == []


def test_reverse_step_warns_before_ddpm_and_keeps_reruns_cheap(monkeypatch):
    import genreg_core.diffusion.sampling as sampling
    from genreg_core.config import SamplerConfig

    fast = SamplerConfig(n_steps=2)
    real_view, real_many = sampling.reconstruct_view, sampling.reconstruct_many
    monkeypatch.setattr(sampling, "reconstruct_view", lambda g, x, y, t, s, seed: real_view(g, x, y, t, fast, seed))
    monkeypatch.setattr(sampling, "reconstruct_many", lambda g, x, y, ts, s, seed: real_many(g, x, y, ts, fast, seed))
    at = AppTest.from_file("../../app_pages/reverse_step.py", default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.number_input(key="rs.steps").value == 25  # the CLI's default
    assert not at.warning
    at.radio(key="rs.method").set_value("ddpm").run()
    assert not at.exception, at.exception
    assert any("DDPM runs one network evaluation per step" in w.value for w in at.warning)
    at.slider(key="rs.t").set_value(100).run()
    assert not at.exception, at.exception
@pytest.mark.parametrize("fault", ["damaged", "home_is_a_file"])
def test_training_runs_page_survives_an_unusable_store(monkeypatch, tmp_path, fault):
    if fault == "damaged":
        (tmp_path / "mlflow.db").write_bytes(b"\x00garbage" * 100)
        monkeypatch.setenv("GENREG_HOME", str(tmp_path))
        expected = f"the run store at {tmp_path / 'mlflow.db'} is damaged"
    else:
        (tmp_path / "file").write_text("not a folder")
        monkeypatch.setenv("GENREG_HOME", str(tmp_path / "file"))
        expected = "is not a folder"
    import genreg_app.runs

    genreg_app.runs.run_store.clear()
    try:
        at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    finally:
        genreg_app.runs.run_store.clear()
    assert not at.exception, at.exception
    assert any(expected in e.value for e in at.error), [e.value for e in at.error]
    if fault == "damaged":
        assert (tmp_path / "mlflow.db").read_bytes() == b"\x00garbage" * 100


def test_training_runs_page_shows_a_store_failure_inside_the_live_panel(monkeypatch, tmp_path):
    from genreg_core.runs.store import RunStore, StoreError

    store = RunStore(tmp_path)
    calls = []

    def list_runs(*args, **kwargs):  # the store goes bad after the first look, while the panel polls it
        calls.append(1)
        if len(calls) > 1:
            raise StoreError(f"the run store at {store.db_path} is locked by another process (database is locked)")
        return []

    monkeypatch.setattr(store, "list_runs", list_runs)
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: store)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("is locked by another process" in e.value for e in at.error)
    assert any(b.label == "Launch" for b in at.button)  # the rest of the page stays usable


def test_training_runs_page_refuses_a_seed_out_of_range_and_stays_up(monkeypatch):
    launched = []

    def record_only(store, spec, max_concurrent=2):
        launched.append(store.create_run(spec))  # create_run checks the config first

    monkeypatch.setattr("genreg_core.runs.worker.launch_run", record_only)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    at.multiselect(key="tr.methods").set_value(["ce"])
    at.text_input(key="tr.seeds").set_value(str(2**70))
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert not at.exception, at.exception
    assert any("seed must lie in [0, 2**32 - 1]" in e.value for e in at.error)
    assert launched == [] and any(b.label == "Launch" for b in at.button)


def test_server_hides_tracebacks_from_the_browser():
    from pathlib import Path

    import tomllib
    from streamlit.config import ShowErrorDetailsConfigOptions

    config = tomllib.loads((Path(__file__).parents[2] / ".streamlit" / "config.toml").read_text())
    value = config["client"]["showErrorDetails"]
    assert value == ShowErrorDetailsConfigOptions.NONE  # a generic message in the browser, the traceback in the log
def test_sidebar_device_settings_reach_the_lab(monkeypatch):
    import genreg_app.state
    from genreg_core.lab import open_lab as core_open_lab

    opened = []

    def open_lab(*args, **kwargs):
        opened.append(kwargs)
        return core_open_lab(*args, **kwargs)

    monkeypatch.setattr(genreg_app.state, "open_lab", open_lab)
    st.cache_resource.clear()
    at = AppTest.from_file("../../app_pages/home.py", default_timeout=180)
    at.session_state["genreg.device"] = "cpu"
    at.session_state["genreg.precision"] = "bf16"
    at.session_state["genreg.compile"] = "off"
    at.run()
    st.cache_resource.clear()
    assert not at.exception, at.exception
    labels = [box.label for box in at.sidebar.selectbox]
    assert labels.index("Precision") == labels.index("Device") + 1 and "Compile the UNet" in labels
    assert opened == [{"precision": "bf16", "compile": False}]


def test_training_runs_page_plots_accuracy_against_generator_quality(monkeypatch, tmp_path):
    """Runs on two generators of known fidelity give the quality-dial chart: GDA at each fidelity, CE a level."""
    from genreg_core.config import DataConfig, TrainConfig
    from genreg_core.runs.store import RunSpec, RunStore

    store = RunStore(tmp_path / "store")
    for method, generator, fidelity, accuracies in (("ce", None, 0.714, (0.66, 0.67)),
                                                    ("gda", None, 0.714, (0.72, 0.74)),
                                                    ("gda", "shipped-early", 0.45, (0.60, 0.61))):
        for seed, accuracy in enumerate(accuracies):
            spec = RunSpec(dataclasses.replace(TrainConfig.tiny(method), seed=seed), DataConfig(), generator, "cpu")
            run_id = store.create_run(spec)
            store.client.log_metric(run_id, "test_accuracy_at_best", accuracy, step=0)
            store.client.log_metric(run_id, "generator_fidelity", fidelity, step=0)
            store.client.set_terminated(run_id, "FINISHED")
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: store)
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not at.exception, at.exception
    assert "Accuracy vs generator quality (digits)" in [s.value for s in at.subheader]
    summary = at.dataframe[1].value
    assert sorted(zip(summary["method"], summary["generator"])) == [("ce", "shipped"), ("gda", "shipped"),
                                                                     ("gda", "shipped-early")]
    chart = json.loads(next(c for c in at.get("plotly_chart") if c.key == "tr.quality").proto.spec)
    gda = next(t for t in chart["data"] if t["name"].startswith("gda"))
    assert gda["x"] == pytest.approx([45.0, 71.4]) and gda["y"] == pytest.approx([60.5, 73.0])

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from genreg_core.cli.main import main
from genreg_core.config import DataConfig, TrainConfig
from genreg_core.runs.store import RunSpec, RunStore, RunSummary, summarize_runs
from genreg_core.runs.worker import execute_run, launch_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("runs_home"))


def _spec(method="ce", seed=0, epochs=2) -> RunSpec:
    return RunSpec(dataclasses.replace(TrainConfig.tiny(method), epochs=epochs, seed=seed), DataConfig(), None, "cpu")


def test_spec_roundtrip():
    spec = _spec("adarand", seed=3)
    assert RunSpec.from_json(spec.to_json()) == spec


def test_foreground_run_is_recorded(store):
    run_id = store.create_run(_spec())
    assert store.summary(run_id).status == "queued"
    result = execute_run(store, run_id)
    summary = store.summary(run_id)
    assert summary.status == "finished" and result.status == "finished"
    assert summary.epoch == 2 and summary.test_accuracy == pytest.approx(result.test_accuracy)
    history = store.history(run_id)
    assert [s for s, _ in history["val_loss"]] == [1, 2]
    artifacts = store.artifact_dir(run_id)
    assert (artifacts / "classifier.safetensors").exists() and (artifacts / "run_config.json").exists()
    assert any(k.startswith("step/") for k in store.metric_keys(run_id))


def test_stop_before_start_and_mid_run(store):
    run_id = store.create_run(_spec())
    store.request_stop(run_id)
    assert execute_run(store, run_id) is None
    assert store.summary(run_id).status == "stopped"

    run_id = store.create_run(_spec(epochs=5))
    result = execute_run(store, run_id, on_step=lambda step, m: step == 2 and store.request_stop(run_id))
    assert result.status == "stopped" and store.summary(run_id).status == "stopped"
    assert store.summary(run_id).epoch < 5


def test_crash_marks_failed_with_error_text(store, monkeypatch):
    def boom(*args, **kwargs):
        raise FloatingPointError("loss became nan at step 3 (ce)")

    monkeypatch.setattr("genreg_core.runs.worker.train_classifier", boom)
    run_id = store.create_run(_spec())
    with pytest.raises(FloatingPointError):
        execute_run(store, run_id)
    summary = store.summary(run_id)
    assert summary.status == "failed" and "nan at step 3" in summary.error


def test_dead_worker_is_reported_failed(store):
    run_id = store.create_run(_spec())
    store.client.update_run(run_id, "RUNNING")
    store.client.set_tag(run_id, "genreg.pid", "999999999")
    summary = store.summary(run_id)
    assert summary.status == "failed" and "worker process ended" in summary.error


def test_a_live_process_that_reuses_a_dead_workers_pid_is_not_taken_for_it(store):
    import os

    run_id = store.create_run(_spec())
    store.client.update_run(run_id, "RUNNING")
    store.record_worker(run_id, os.getpid())  # this process stands for the worker: alive, same start time
    assert store.summary(run_id).status == "running"
    # the pid now belongs to another process: same number, a different start time (clock ticks since boot)
    recorded = store.get_run(run_id).data.tags["genreg.pid_start"]
    assert recorded == open(f"/proc/{os.getpid()}/stat").read().split(") ")[-1].split()[19]
    store.client.set_tag(run_id, "genreg.pid_start", str(int(recorded) - 1))
    summary = store.summary(run_id)
    assert summary.status == "failed" and "worker process ended" in summary.error


def test_delete_removes_run(store):
    run_id = store.create_run(_spec())
    store.delete_run(run_id)
    assert run_id not in [r.run_id for r in store.list_runs()]


def test_background_run_end_to_end(store):
    run_id = launch_run(store, _spec(epochs=2), max_concurrent=2)
    deadline = time.time() + 240
    while time.time() < deadline and store.summary(run_id).status in ("queued", "running"):
        time.sleep(1)
    summary = store.summary(run_id)
    log = (store.run_dir(run_id) / "worker.log").read_text()
    assert summary.status == "finished", log
    assert summary.test_accuracy is not None and summary.epoch == 2


def test_summarize_runs_mean_and_std():
    def run(method, seed, acc, status="finished"):
        return RunSummary(f"r{seed}{method}", "n", status, method, "10", seed, 3, 3, 0.5, acc, 0.0, None, None)

    rows = summarize_runs([run("ce", 0, 0.8), run("ce", 1, 0.9), run("mgr", 0, 0.95), run("mgr", 1, None, "failed")])
    ce = next(r for r in rows if r["method"] == "ce")
    assert ce["runs"] == 2 and ce["test_accuracy_mean"] == pytest.approx(0.85)
    assert ce["test_accuracy_std"] == pytest.approx(np.sqrt(0.005))  # sample std: ((0.05² + 0.05²) / 1) ** 0.5
    assert next(r for r in rows if r["method"] == "mgr")["runs"] == 1


def test_summary_keeps_generators_apart_with_their_fidelity():
    """GDA with the early checkpoint is not pooled with GDA on the final generator (the quality dial)."""
    def run(seed, acc, generator, fidelity):
        return RunSummary(f"r{seed}{generator}", "n", "finished", "gda", "10", seed, 3, 3, 0.5, acc, 0.0, None, None,
                          generator=generator, generator_fidelity=fidelity)

    rows = summarize_runs([run(0, 0.7, "shipped", 0.714), run(1, 0.8, "shipped", 0.714),
                           run(0, 0.5, "shipped-early", 0.45)])
    by = {r["generator"]: r for r in rows}
    assert by["shipped"]["runs"] == 2 and by["shipped"]["generator_fidelity"] == 0.714
    assert by["shipped"]["test_accuracy_mean"] == pytest.approx(0.75)
    assert by["shipped-early"]["runs"] == 1 and by["shipped-early"]["generator_fidelity"] == 0.45
    assert np.isnan(by["shipped-early"]["test_accuracy_std"])  # one run: no spread


def test_a_run_records_its_generators_fidelity(store):
    """Every run records the measured class fidelity of its generator (the quality dial), from the model's
    genreg.json, and the generator it names."""
    meta = json.loads((Path(__file__).resolve().parents[2] / "genreg_core/assets/digits-ddpm/genreg.json").read_text())
    run_id = store.create_run(_spec(epochs=1))
    execute_run(store, run_id, max_concurrent=None)
    summary = store.summary(run_id)
    assert summary.status == "finished" and summary.generator == "shipped"
    assert summary.generator_fidelity == pytest.approx(meta["class_fidelity"]) and 0.9 < summary.generator_fidelity


def test_summarize_runs_keeps_datasets_and_generators_apart(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.create_run(RunSpec(TrainConfig.tiny(), DataConfig(name=name), generator))
           for name, generator in (("digits", None), ("fashion-mnist", None), ("fashion-mnist", "shipped-early"))]
    runs = [store.summary(run_id) for run_id in ids]
    assert [(r.dataset, r.generator) for r in runs] == [("digits", "shipped"), ("fashion-mnist", "shipped"),
                                                        ("fashion-mnist", "shipped-early")]
    for run in runs:  # finished, all with the same method, setting and seed
        run.status, run.test_accuracy = "finished", 0.5
    rows = summarize_runs(runs)
    assert [(r["dataset"], r["generator"], r["runs"]) for r in rows] == [
        ("digits", "shipped", 1), ("fashion-mnist", "shipped", 1), ("fashion-mnist", "shipped-early", 1)]


def test_cli_train_and_runs_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    args = ["train", "--method", "ce", "--per-class", "5", "--epochs", "2", "--seed", "1", "--preset", "tiny",
            "--device", "cpu", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(payload) == {"method", "per_class", "seed", "init", "generator_regime", "best_val_loss", "test_accuracy",
                            "epochs", "run_id", "skipped"}
    assert payload["skipped"] == []
    assert payload["method"] == "ce" and payload["per_class"] == 5 and payload["seed"] == 1 and payload["epochs"] == 2
    assert 0 <= payload["test_accuracy"] <= 1
    assert main(["runs", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in listed] == [payload["run_id"]]
    out = tmp_path / "runs.json"
    assert main(["runs", "export", "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported[0]["history"]["val_loss"][-1][0] == 2
    assert main(["runs", "export", "--out", str(tmp_path / "runs.csv")]) == 0
    assert (tmp_path / "runs.csv").read_text().startswith("run_id,")
    assert main(["runs", "delete", payload["run_id"]]) == 0
    capsys.readouterr()
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["train", "--method", "nope", "--epochs", "1"]) == 2
    assert "unknown method" in capsys.readouterr().err

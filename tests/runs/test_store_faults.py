"""Faults of the run store and its workers: damaged or locked stores, hostile run ids, killed and failed workers."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genreg_core.cli.main import main
from genreg_core.config import DataConfig, TrainConfig
from genreg_core.runs.store import RunSpec, RunStore, StoreError
from genreg_core.runs.worker import execute_run, launch_run

REPO = Path(__file__).resolve().parents[2]


def _spec(epochs=2, root=None) -> RunSpec:
    data = DataConfig(name="imagefolder", root=root) if root else DataConfig()
    return RunSpec(dataclasses.replace(TrainConfig.tiny("ce"), epochs=epochs), data, None, "cpu")


def _status_elsewhere(home: Path, run_id: str) -> str:
    """The run's status as another process (a second app server, ``genreg runs list``) computes it."""
    code = f"from genreg_core.runs.store import RunStore; print(RunStore({str(home)!r}).summary({run_id!r}).status)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    return out.stdout.strip().splitlines()[-1]


def _cli_error(args, capsys) -> str:
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> RunStore:
    """One store for the tests that only look at their own runs (creating a store costs seconds)."""
    return RunStore(tmp_path_factory.mktemp("shared_home"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.mark.parametrize("content", [os.urandom(4096), b"SQLite format 3\x00" + os.urandom(8000)],
                         ids=["not-sqlite", "sqlite-header-garbage-pages"])
def test_damaged_store_is_reported_and_never_overwritten(home, content, capsys):
    db = home / "mlflow.db"
    db.write_bytes(content)
    with pytest.raises(StoreError, match=f"the run store at {db} is damaged"):
        RunStore().list_runs()
    for args in (["runs", "list"], ["runs", "show", "0" * 32], ["runs", "export", "--out", str(home / "r.csv")],
                 ["runs", "stop", "0" * 32], ["train", "--method", "ce", "--preset", "tiny", "--epochs", "1"]):
        assert f"the run store at {db} is damaged" in _cli_error(args, capsys)
    assert db.read_bytes() == content
    assert not (home / "r.csv").exists()


def test_store_that_is_a_folder_is_damaged(home, capsys):
    (home / "mlflow.db").mkdir()
    assert "is damaged (it is not a file)" in _cli_error(["runs", "list"], capsys)
    assert (home / "mlflow.db").is_dir()


def test_locked_store_is_reported_locked(home, capsys):
    store = RunStore()
    run_id = store.create_run(_spec())
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(home / "mlflow.db")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = _cli_error(["runs", "show", run_id], capsys)  # waits out SQLite's 20 s busy timeout
        assert f"the run store at {home / 'mlflow.db'} is locked by another process" in message
    finally:
        holder.kill()
        holder.wait()
    assert RunStore().summary(run_id).status == "queued"  # nothing was lost


def test_genreg_home_that_is_a_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "file"))
    assert f"GENREG_HOME {tmp_path / 'file'} is not a folder" in _cli_error(["runs", "list"], capsys)
    with pytest.raises(ValueError, match="is not a folder"):
        RunStore()


@pytest.mark.parametrize("bad_id", ["../../outside", "/tmp/outside", "..", "", "A" * 32, "0" * 31 + "/"])
def test_run_ids_are_validated_before_any_file_access(home, bad_id):
    store = RunStore()
    before = sorted(str(p) for p in home.parent.rglob("*"))
    for call in (store.request_stop, store.delete_run, store.load_snapshots, store.load_spec, store.summary,
                 store.n_snapshots):
        with pytest.raises(ValueError, match="no run"):
            call(bad_id)
    assert sorted(str(p) for p in home.parent.rglob("*") if "mlflow.db" not in p.name) == [
        p for p in before if "mlflow.db" not in p]


def test_stop_and_delete_check_that_the_run_exists(shared):
    store = shared
    missing = "f" * 32
    for call in (store.request_stop, store.delete_run):
        with pytest.raises(ValueError, match=f"no run '{missing}'"):
            call(missing)
    assert not store.run_dir(missing).exists()
    run_id = store.create_run(_spec())
    store.delete_run(run_id)
    with pytest.raises(ValueError, match="no run"):
        store.delete_run(run_id)


def test_mgr_source_cannot_read_snapshots_outside_the_store(home, capsys):
    import torch
    from safetensors.torch import save_file

    outside = home.parent / "x" / "snapshots"
    outside.mkdir(parents=True)
    save_file({"sample_images": torch.zeros(2, 1, 16, 16), "sample_classes": torch.zeros(2)},
              outside / "epoch_001.safetensors")
    for run in ("../../x", str(home.parent / "x")):
        message = _cli_error(["features", "--source", "mgr", "--run", run, "--n", "2"], capsys)
        assert f"no run {run!r}" in message


def test_a_run_whose_start_fails_is_marked_failed(shared):
    store = shared
    with pytest.raises(ValueError, match="could not be recorded"):
        launch_run(store, _spec(root="/data/caf\udce9"))  # a data root that is not valid UTF-8
    run = store.list_runs()[0]  # the newest
    assert run.status == "failed" and "surrogates not allowed" in run.error


def test_a_worker_that_cannot_read_its_config_marks_the_run_failed(shared):
    store = shared
    run_id = store.create_run(_spec())
    (store.run_dir(run_id) / "run_config.json").write_text("{truncated")
    with pytest.raises(ValueError):
        execute_run(store, run_id)
    summary = store.summary(run_id)
    assert summary.status == "failed" and "JSONDecodeError" in summary.error


def test_a_worker_that_dies_before_recording_anything_is_failed(shared, monkeypatch):
    store = shared
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the worker exits at once with status 1
    run_id = launch_run(store, _spec())
    deadline = time.time() + 5
    while store.summary(run_id).status == "queued" and time.time() < deadline:
        time.sleep(0.1)
    summary = store.summary(run_id)
    assert summary.status == "failed" and "ended without recording a result" in summary.error


def test_a_worker_that_cannot_be_started_fails_the_run(shared, monkeypatch):
    store = shared
    monkeypatch.setattr(sys, "executable", str(shared.home / "no-such-python"))
    with pytest.raises(ValueError, match="the worker could not be started"):
        launch_run(store, _spec())
    run = store.list_runs()[0]  # the newest
    assert run.status == "failed" and "could not be started" in run.error


def test_a_zombie_worker_counts_as_dead_in_every_process(shared):
    store = shared
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # ends at once; nobody reaps it until wait()
    try:
        deadline = time.time() + 30
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z" and time.time() < deadline:
            time.sleep(0.05)
        run_id = store.create_run(_spec())
        store.client.set_tag(run_id, "genreg.pid", str(child.pid))
        store.client.update_run(run_id, "RUNNING")
        assert _status_elsewhere(shared.home, run_id) == "failed"
        assert store.summary(run_id).status == "failed"
    finally:
        child.wait()


def test_a_killed_worker_shows_failed_within_two_seconds(shared):
    store = shared
    run_id = launch_run(store, _spec(epochs=10_000), max_concurrent=4)
    deadline = time.time() + 180
    while store.summary(run_id).status != "running" and time.time() < deadline:
        time.sleep(0.5)
    assert store.summary(run_id).status == "running", (store.run_dir(run_id) / "worker.log").read_text()
    pid = int(store.get_run(run_id).data.tags["genreg.pid"])
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    while store.summary(run_id).status == "running" and time.time() - killed < 10:
        time.sleep(0.1)
    elapsed = time.time() - killed
    summary = store.summary(run_id)
    assert summary.status == "failed" and elapsed < 2.0, (summary, elapsed)
    reaped_by = time.time() + 2.0  # the launcher's reaper thread waits on the worker
    while Path(f"/proc/{pid}").exists() and time.time() < reaped_by:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie


def test_marking_a_run_failed_twice_at_once_is_not_a_damaged_store(shared, monkeypatch):
    """Two readers settling the same dead worker race on the error tag's row; the loser must still end the run."""
    run_id = shared.create_run(_spec())
    real_set_tag = shared.client.set_tag

    def racing_set_tag(rid, key, value):
        real_set_tag(rid, key, value)  # the other process got there first ...
        raise StoreError(f"the run store at {shared.home} is damaged (UNIQUE constraint failed: tags.key, "
                         "tags.run_uuid)")  # ... so this insert collides with its row

    monkeypatch.setattr(shared.client, "set_tag", racing_set_tag)
    shared.mark_failed(run_id, "the worker process ended without recording a result")
    monkeypatch.undo()
    summary = shared.summary(run_id)
    assert summary.status == "failed" and "without recording" in (summary.error or "")

"""Faults of a foreground ``genreg train``: two at once on one store, SIGKILL mid-run, its run folder deleted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from genreg_core.runs.store import RunStore

REPO = Path(__file__).resolve().parents[2]


def _genreg(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genreg_core", *args], cwd=REPO, text=True,
                            env=dict(os.environ, GENREG_HOME=str(home)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _train(home: Path, seed: int, epochs: int) -> subprocess.Popen:
    return _genreg(home, "train", "--method", "ce", "--per-class", "3", "--epochs", str(epochs), "--seed", str(seed),
                   "--preset", "tiny", "--device", "cpu", "--json")


def _listed(home: Path) -> list[dict]:
    """``genreg runs list --json`` as another process sees it."""
    listing = _genreg(home, "runs", "list", "--json")
    out, err = listing.communicate(timeout=120)
    assert listing.returncode == 0, err
    return json.loads(out)


def _running_run(home: Path, proc: subprocess.Popen, timeout: float = 180.0) -> str:
    """The id of the run ``proc`` is training, once the store shows it running and past its first epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (home / "mlflow.db").exists():
            running = [r for r in RunStore(home).list_runs() if r.status == "running" and r.epoch >= 1]
            if running:
                return running[0].run_id
        time.sleep(0.5)
    raise TimeoutError("the run never showed as running")


def test_two_foreground_trains_at_once_on_one_store_both_finish(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    procs = [_train(home, seed, epochs=2) for seed in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    ids = {json.loads(out.strip().splitlines()[-1])["run_id"] for out, _ in outs}
    rows = _listed(home)
    assert {r["run_id"] for r in rows} == ids and len(ids) == 2
    assert all(r["status"] == "finished" for r in rows)


def test_sigkill_of_a_foreground_train_shows_the_run_failed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = _train(home, 0, epochs=2000)
    run_id = _running_run(home, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (row,) = [r for r in _listed(home) if r["run_id"] == run_id]
    assert row["status"] == "failed", row


def test_deleting_the_run_folder_mid_run_ends_with_one_line_and_exit_2(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = _train(home, 0, epochs=2000)
    run_id = _running_run(home, proc)
    shutil.rmtree(RunStore(home).run_dir(run_id))
    out, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line and "it/s" not in line]
    assert proc.returncode == 2, err[-2000:]
    assert lines and lines[-1].startswith("genreg: error:") and "Traceback" not in err, err[-2000:]


def test_a_read_only_genreg_home_gets_one_line_and_exit_2(tmp_path):
    """An existing folder nobody may write to (``/proc/self/fdinfo`` refuses even root): one line, exit 2."""
    for args in (("runs", "list"), ("train", "--method", "ce", "--per-class", "3", "--epochs", "1", "--preset", "tiny",
                                    "--device", "cpu")):
        proc = _genreg(Path("/proc/self/fdinfo"), *args)
        out, err = proc.communicate(timeout=300)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "cannot be written" in lines[0], err[-2000:]

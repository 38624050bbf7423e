"""The Ray engine on one shared local Ray (num_cpus=2): parity with the local engine, a killed task retried."""

import os
import signal
import threading
import time

import pytest

from genreg_core.runs.engines import REPO_ROOT, LocalEngine, RayEngine, Resources
from genreg_core.runs.grid import run_grid
from genreg_core.runs.store import RunStore
from tests.runs.test_grid import tiny_grid

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (slow to start on a loaded machine); its workers import this checkout."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    yield ray
    ray.shutdown()


def test_ray_grid_equals_the_local_grid_to_the_last_digit(local_ray, tmp_path):
    local_store, ray_store = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    local = run_grid(local_store, tiny_grid(), LocalEngine(local_store, Resources(1)), poll_seconds=0.3)
    on_ray = run_grid(ray_store, tiny_grid(), RayEngine(ray_store, Resources(1)), poll_seconds=0.3)
    assert [c.status for c in on_ray.cells] == ["finished", "finished"]
    assert [c.cell for c in on_ray.cells] == [c.cell for c in local.cells]
    assert [c.test_accuracy for c in on_ray.cells] == [c.test_accuracy for c in local.cells]
    history = {r.seed: ray_store.history(r.run_id)["val_loss"] for r in ray_store.list_runs()}
    assert history == {r.seed: local_store.history(r.run_id)["val_loss"] for r in local_store.list_runs()}
    assert ray_store.get_run(on_ray.cells[0].run_id).data.tags["genreg.pid"] != str(os.getpid())  # a Ray worker ran it


def _kill_runs_of(store: RunStore, per_class: str, stop: threading.Event, killed: list) -> None:
    """Kill with SIGKILL the worker of every run of ``per_class`` as soon as it records its pid."""
    while not stop.is_set():
        for run in store.list_runs():
            pid = store.get_run(run.run_id).data.tags.get("genreg.pid") if run.per_class == per_class else None
            if run.status in ("queued", "running") and pid and run.run_id not in killed:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(run.run_id)
        time.sleep(0.1)


def test_a_killed_task_is_retried_then_failed_and_the_grid_completes(local_ray, tmp_path):
    store = RunStore(tmp_path / "home")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_runs_of, args=(store, "all", stop, killed), daemon=True)
    killer.start()
    try:
        # 8 epochs: the "all" run must outlive the killer's first look at its pid (1 epoch now ends too soon)
        result = run_grid(store, tiny_grid(per_class=(5, None), seeds=(0,), epochs=8), RayEngine(store, Resources(1)),
                          retries=1, poll_seconds=0.3)
    finally:
        stop.set()
        killer.join()
    by_setting = {c.cell.per_class: c for c in result.cells}
    assert by_setting[5].status == "finished" and by_setting[5].attempts == 1
    failed = by_setting[None]
    assert failed.status == "failed" and failed.attempts == 2 and len(killed) == 2
    assert failed.error and result.progress.failed == 1 and result.progress.left == 0
    statuses = {r.run_id: r.status for r in store.list_runs()}
    assert [statuses[r] for r in killed] == ["failed", "failed"] and failed.run_id == killed[-1]

"""Executes runs of the run store: in the foreground (CLI) or in a detached background process (app).

A background worker is ``python -m genreg_core.runs.worker RUN_ID``: it records its pid, waits for one of
``max_concurrent`` slots (file locks, so any number of app tabs and CLI calls share them), trains, and
records everything in the store. A stop request is honoured within one step; a crash or a non-finite
loss marks the run FAILED with the error text; the run's record survives the app server.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from genreg_core.data.datasets import scoring_set
from genreg_core.distributed import Parallel
from genreg_core.runs.store import RunSpec, RunStore
from genreg_core.training.loop import TrainCallbacks, TrainResult, train_classifier

DEFAULT_MAX_CONCURRENT = int(os.environ.get("GENREG_MAX_RUNS", "2"))
FLUSH_SECONDS = 1.0


class _MetricLogger:
    """Buffers per-step metrics and writes them in batches; epoch metrics go out at once."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.buffer: list = []
        self.last_flush = time.time()

    def log(self, metrics: dict[str, float], step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.buffer += [Metric(prefix + k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if time.time() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.buffer), 900):  # MLflow accepts at most 1000 metrics per batch
            self.store.client.log_batch(self.run_id, metrics=self.buffer[start:start + 900])
        self.buffer, self.last_flush = [], time.time()


def _acquire_slot(home: Path, max_concurrent: int, should_abort: Callable[[], bool]):
    """Block until one of ``max_concurrent`` file-lock slots is free; None if aborted while waiting."""
    slots = home / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    while not should_abort():
        for i in range(max(1, max_concurrent)):
            handle = open(slots / f"slot{i}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        time.sleep(0.5)
    return None


def _save_model(store: RunStore, run_id: str, result: TrainResult) -> None:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classifier.safetensors"
        save_file({k: v.contiguous() for k, v in result.state_dict.items()}, path)
        store.client.log_artifact(run_id, str(path))


def _run_generator(store: RunStore, run_id: str, lab, spec: RunSpec, logger: _MetricLogger,
                   on_generator_step: Callable[[int, int, dict], None] | None):
    """The run's generator under its regime; an ``own`` one trained here logs ``generator/loss`` per step and
    its progress in the tag ``genreg.generator_progress`` ("done/total", then "cached" or "trained")."""
    from genreg_core.training.generator_regime import run_generator

    last = [0.0]

    def on_step(step: int, total: int, metrics: dict) -> None:
        logger.log({"generator/loss": metrics["loss"]}, step)
        if time.time() - last[0] > FLUSH_SECONDS or step == total:
            store.client.set_tag(run_id, "genreg.generator_progress", f"{step}/{total}")
            last[0] = time.time()
        if on_generator_step is not None:
            on_generator_step(step, total, metrics)

    generator = run_generator(lab, spec.train, on_step)
    if spec.train.generator_regime == "own":
        trained = store.client.get_run(run_id).data.tags.get("genreg.generator_progress") is not None
        store.client.set_tag(run_id, "genreg.generator_progress", "trained" if trained else "cached")
        store.client.set_tag(run_id, "genreg.own_generator", generator.metadata.get("key", ""))
    if generator.class_fidelity is not None:  # the generator-quality dial, on every run (docs/models.md)
        logger.log({"generator_fidelity": generator.class_fidelity}, 0)
    logger.flush()
    return generator


def _recording_callbacks(store: RunStore, run_id: str, logger: _MetricLogger,
                         on_step: Callable[[int, dict], None] | None, on_epoch: Callable[[int, dict], None] | None,
                         should_stop: Callable[[], bool]) -> TrainCallbacks:
    """Training callbacks that log metrics and snapshots to the store, then call the caller's own."""
    from safetensors.torch import save_file

    folder = store.run_dir(run_id)
    snap_dir = folder / "snapshots"
    snap_dir.mkdir(parents=True, exist_ok=True)

    def step_cb(step: int, metrics: dict) -> None:
        logger.log(metrics, step, prefix="step/")
        if on_step is not None:
            on_step(step, metrics)

    def epoch_cb(epoch: int, metrics: dict) -> None:
        if not folder.is_dir():  # its config, logs and snapshots are gone: nothing the run records could be read
            raise ValueError(f"run {run_id}: its folder {folder} was deleted while it ran; the run is marked failed")
        logger.log({**metrics, "epoch": epoch}, epoch)
        logger.flush()
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    def snapshot_cb(epoch: int, tensors: dict) -> None:
        if tensors:
            path = snap_dir / f"epoch_{epoch:03d}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path)
            store.client.log_artifact(run_id, str(path), "snapshots")

    return TrainCallbacks(on_step=step_cb, on_epoch=epoch_cb, on_snapshot=snapshot_cb, should_stop=should_stop)


def execute_run(store: RunStore, run_id: str, max_concurrent: int | None = DEFAULT_MAX_CONCURRENT,
                on_step: Callable[[int, dict], None] | None = None,
                on_epoch: Callable[[int, dict], None] | None = None,
                on_generator_step: Callable[[int, int, dict], None] | None = None,
                parallel: Parallel | None = None) -> TrainResult | None:
    """Run ``run_id`` to its end and record it; returns None if it was stopped before it started.

    Under ``accelerate launch`` this is the main process's part (``parallel``); the others run :func:`follow_run`.

    Under the ``own`` regime the run first trains (or loads) its own generator, reporting each step through
    ``on_generator_step(step, total, metrics)``.

    ``max_concurrent`` is the number of file-lock slots shared by this machine's genreg processes; None waits for
    none (a scheduler such as Ray decides what runs at once). The run's wall and CPU seconds are logged as the
    metrics ``run_seconds`` and ``run_cpu_seconds``.

    Exceptions from training are recorded (status FAILED, tag ``genreg.error``) and re-raised.
    """
    from genreg_core.lab import open_lab

    client = store.client
    store.get_run(run_id)
    store.record_worker(run_id, os.getpid())
    logger = _MetricLogger(store, run_id)

    def should_stop() -> bool:
        return store.stop_requested(run_id)

    slot = None
    try:
        spec: RunSpec = store.load_spec(run_id)
        if max_concurrent is not None:
            slot = _acquire_slot(store.home, max_concurrent, should_stop)
            if slot is None:
                client.set_terminated(run_id, "KILLED")
                return None
        elif should_stop():
            client.set_terminated(run_id, "KILLED")
            return None
        client.update_run(run_id, status="RUNNING")
        started, cpu_started = time.perf_counter(), time.process_time()
        lab = open_lab(spec.data, spec.generator, _process_device(spec, parallel))
        generator = _run_generator(store, run_id, lab, spec, logger, on_generator_step)
        callbacks = _recording_callbacks(store, run_id, logger, on_step, on_epoch, should_stop)
        result = train_classifier(lab.dataset, lab.split, spec.train, generator, lab.device, callbacks, parallel)
        best = result.history[result.best_epoch - 1] if result.best_epoch else {}
        if best:  # read once, after training: the best epoch's point of the epoch curves
            logger.log({k: best[k] for k in ("test_loss", "test_accuracy")}, result.best_epoch)
        logger.flush()
        final = {"best_val_loss": result.best_val_loss, "test_accuracy_at_best": result.test_accuracy,
                 "val_accuracy_at_best": best.get("val_accuracy"), "best_epoch": result.best_epoch,
                 "n_ce_labels": len(result.train_indices), "n_meta_labels": len(result.meta_indices),
                 "n_test_images": len(scoring_set(lab.dataset, lab.split)[1]),
                 "run_seconds": time.perf_counter() - started, "run_cpu_seconds": time.process_time() - cpu_started}
        logger.log({k: v for k, v in final.items() if v is not None}, 0)
        logger.flush()
        _save_model(store, run_id, result)
        client.set_terminated(run_id, "FINISHED" if result.status == "finished" else "KILLED")
        return result
    except BaseException as exc:
        logger.flush()
        if isinstance(exc, KeyboardInterrupt):
            client.set_terminated(run_id, "KILLED")
        else:
            store.mark_failed(run_id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if slot is not None:
            slot.close()


def _process_device(spec: RunSpec, parallel: Parallel | None) -> str:
    """The run's device, or this process's own (``cuda:LOCAL_RANK``) under a launcher."""
    if parallel is None or parallel.accelerator is None:
        return spec.device
    device = parallel.accelerator.device
    return "cpu" if device.type == "cpu" else str(device)


def follow_run(spec: RunSpec, parallel: Parallel) -> TrainResult:
    """A non-main process's part of a run under ``accelerate launch``: it trains its slice of every batch and
    records nothing (the main process's :func:`execute_run` writes the store). The ``own`` regime is refused
    before this (its generator would be trained by every process)."""
    from genreg_core.lab import open_lab
    from genreg_core.training.generator_regime import run_generator

    lab = open_lab(spec.data, spec.generator, _process_device(spec, parallel))
    generator = run_generator(lab, spec.train, None)
    return train_classifier(lab.dataset, lab.split, spec.train, generator, lab.device, None, parallel)


def launch_run(store: RunStore, spec: RunSpec, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
               tags: dict[str, str] | None = None, threads: int | None = None) -> str:
    """Record a queued run (with extra ``tags``) and start its detached background worker; returns the run id."""
    run_id = store.create_run(spec, tags=tags)
    start_worker(store, run_id, max_concurrent, threads)
    return run_id


def start_worker(store: RunStore, run_id: str, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 threads: int | None = None) -> subprocess.Popen:
    """Start the detached background worker of the recorded run ``run_id`` with ``threads`` torch threads (default:
    the machine's cores shared by ``max_concurrent`` runs)."""
    threads = threads or max(1, (os.cpu_count() or 2) // max(1, max_concurrent))
    env = dict(os.environ, GENREG_HOME=str(store.home), OMP_NUM_THREADS=str(threads),
               MLFLOW_TRACKING_URI=store.tracking_uri)
    try:
        with open(store.run_dir(run_id) / "worker.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "genreg_core.runs.worker", run_id, "--max-concurrent", str(max_concurrent)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]))
    except (OSError, ValueError) as exc:
        store.mark_failed(run_id, f"the worker could not be started: {exc}")
        raise ValueError(f"run {run_id}: the worker could not be started: {exc}") from exc
    # the worker's pid from the start, so a worker that dies before it records anything is seen as dead
    store.record_worker(run_id, proc.pid)
    # reap the worker when it ends, so a killed worker does not linger as a zombie that looks alive
    threading.Thread(target=proc.wait, name=f"genreg-reaper-{run_id[:8]}", daemon=True).start()
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genreg_core.runs.worker", description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT)
    args = parser.parse_args(argv)
    try:
        execute_run(RunStore(), args.run_id, args.max_concurrent)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

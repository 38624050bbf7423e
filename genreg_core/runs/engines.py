"""Where a grid's runs execute: ``local`` (this machine's background workers) or ``ray`` (one Ray task per run).

An engine takes recorded runs of the store (``submit``), says which of them have ended (``ended``) and how
many it takes at once (``has_room``). It never decides about retries: ``runs.grid.run_grid`` does.

Ray is optional (``pip install 'genreg[ray]'``); without it ``--engine ray`` is refused with one clear line.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from genreg_core.runs.store import RunStore

EngineName = Literal["local", "ray"]
ENGINES = ("local", "ray")
RAY_CONNECT_TIMEOUT_S = 3.0  # a Ray head that does not accept a connection within this is unreachable
TERMINAL = ("finished", "failed", "stopped")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Resources:
    """What each run asks of its machine: CPU cores (also its torch threads) and GPUs."""

    cpu: float = 1.0
    gpu: float = 0.0

    @property
    def threads(self) -> int:
        return max(1, int(self.cpu))


def parse_resources(text: str) -> Resources:
    """``"cpu=2,gpu=0.5"`` -> Resources; ``ValueError`` naming the bad part."""
    values = {"cpu": 1.0, "gpu": 0.0}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, number = part.partition("=")
        if not sep or key.strip() not in values:
            raise ValueError(f"--resources-per-run takes cpu=N,gpu=G, got {part!r}")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"--resources-per-run: {key}={number!r} is not a number") from None
        if not 0 <= value <= 1024 or (key.strip() == "cpu" and value <= 0):
            raise ValueError(f"--resources-per-run: {key} must be {'> 0' if key == 'cpu' else '≥ 0'} and at most "
                             f"1024, got {number}")
        values[key.strip()] = value
    return Resources(values["cpu"], values["gpu"])


class LocalEngine:
    """This machine's pool: detached background workers (``runs.worker``), ``max_concurrent`` at a time, sharing
    the file-lock slots of every genreg process on the machine."""

    def __init__(self, store: RunStore, resources: Resources = Resources(), max_concurrent: int | None = None):
        self.store, self.resources = store, resources
        self.max_concurrent = max_concurrent or max(1, (os.cpu_count() or 1) // resources.threads)

    def has_room(self, in_flight: int) -> bool:
        return in_flight < self.max_concurrent

    def submit(self, run_id: str) -> None:
        from genreg_core.runs.worker import start_worker

        start_worker(self.store, run_id, self.max_concurrent, self.resources.threads)

    def ended(self, run_ids: list[str]) -> dict[str, str | None]:
        """The runs among ``run_ids`` whose worker has recorded an end (or died: the store marks those failed)."""
        return {r: None for r in run_ids if self.store.summary(r).status in TERMINAL}

    def close(self) -> None:
        """Nothing to release: a worker left running finishes and records its run (a rerun then skips it)."""


def import_ray():
    """The ``ray`` module, or ``ValueError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--engine ray needs Ray, which is not installed: pip install 'genreg[ray]' (tested with "
                         "ray==2.60.0)") from exc
    return ray


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """``ValueError`` unless ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) accepts a TCP connection within
    ``timeout`` seconds: a wrong address fails here in seconds rather than in Ray's minute-long connect."""
    bare = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one with "
                         "`ray start --head` or fix --address / RAY_ADDRESS") from exc


def connect_ray(address: str | None = None) -> bool:
    """Join the Ray cluster at ``address`` (default ``RAY_ADDRESS``), or start a local Ray with this machine's cores;
    reuses a Ray this process already joined. Returns whether this call started the connection."""
    ray = import_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local"):
        check_ray_address(address)
    if ray.is_initialized():
        return False
    try:
        if address in (None, "local"):  # workers import this checkout's genreg, as the local pool's do
            path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot join the Ray cluster at {address or 'a new local Ray'}: {first[:300]}") from exc
    return True


def run_task(home: str | None, tracking_uri: str, run_id: str, threads: int) -> float | None:
    """The body of a Ray task: execute the recorded run ``run_id`` with ``threads`` torch threads; its test accuracy.

    ``home`` is the driver's GENREG_HOME when the store is a local SQLite file (the same machine); with a tracking
    server it is None and the node's own GENREG_HOME keeps the run's folder.
    """
    import torch

    from genreg_core.runs.worker import execute_run

    torch.set_num_threads(threads)
    if home is not None:
        os.environ["GENREG_HOME"] = home  # caches (backbones, own generators) beside the driver's
    result = execute_run(RunStore(home, tracking_uri), run_id, max_concurrent=None)
    return None if result is None else result.test_accuracy


class RayEngine:
    """One Ray task per run, each asking ``resources``; Ray queues what does not fit. Ray's own retries are off:
    the grid retries a failed run as a new run of the store."""

    def __init__(self, store: RunStore, resources: Resources = Resources(), address: str | None = None):
        self.ray = import_ray()
        self.store, self.resources = store, resources
        self.started = connect_ray(address)
        self.remote = self.ray.remote(run_task)
        self.refs: dict[str, object] = {}

    def has_room(self, in_flight: int) -> bool:
        return True

    def submit(self, run_id: str) -> None:
        home = None if self.store.is_remote else str(self.store.home)
        self.refs[run_id] = self.remote.options(
            num_cpus=self.resources.cpu, num_gpus=self.resources.gpu, max_retries=0, retry_exceptions=False,
            name=f"genreg-run-{run_id[:8]}").remote(home, self.store.tracking_uri, run_id, self.resources.threads)

    def ended(self, run_ids: list[str]) -> dict[str, str | None]:
        """The tasks among ``run_ids`` that returned or raised, with the error text of those that raised."""
        refs = {self.refs[r]: r for r in run_ids}
        if not refs:
            return {}
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
        out = {}
        for ref in ready:
            run_id = refs[ref]
            try:
                self.ray.get(ref)
                out[run_id] = None
            except Exception as exc:  # the task raised, or its worker died (killed, out of memory)
                text = str(exc).strip().splitlines()
                out[run_id] = f"{type(exc).__name__}: {text[0] if text else ''}"[:1000]
            self.refs.pop(run_id)
        return out

    def close(self) -> None:
        """Cancel tasks still in flight (an interrupted grid), and leave a Ray this engine started."""
        for ref in self.refs.values():
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started:
            self.ray.shutdown()


def check_engine(name: str, address: str | None = None) -> None:
    """Refuse, in seconds and before any work, an unknown engine, a missing Ray or an unreachable ``address``."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
    if name == "local" and address:
        raise ValueError("--address is for --engine ray; the local engine runs on this machine")
    if name == "ray":
        import_ray()
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address not in (None, "auto", "local"):
            check_ray_address(address)


def make_engine(name: str, store: RunStore, resources: Resources = Resources(), address: str | None = None):
    """The engine ``name`` (``local`` | ``ray``) bound to ``store``."""
    check_engine(name, address)
    return LocalEngine(store, resources) if name == "local" else RayEngine(store, resources, address)

"""The run store: every classifier run is an MLflow run in a SQLite tracking store under GENREG_HOME.

The tracking store is ``$GENREG_HOME/mlflow.db`` by default, or the MLflow tracking URI given (``tracking_uri``,
else ``MLFLOW_TRACKING_URI``): an ``http(s)://`` tracking server lets workers on other machines record into one
store (``mlflow server --backend-store-uri sqlite:///…/mlflow.db``; docs/grids.md).

Layout under ``$GENREG_HOME`` (default ``~/.genreg``):
``mlflow.db`` (tracking store; ``mlflow ui --backend-store-uri sqlite:///…/mlflow.db`` shows the runs),
``artifacts/`` (snapshots, the best-validation classifier, all safetensors) and ``runs/<run_id>/`` (the run's config,
its stop flag and its worker log). Statuses follow MLflow: SCHEDULED (queued), RUNNING, FINISHED,
KILLED (stopped by the user), FAILED (crash or non-finite loss, with the error text in a tag).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genreg_core.config import DataConfig, TrainConfig
from genreg_core.paths import genreg_home
from genreg_core.runs.processes import last_line, process_start, worker_alive

EXPERIMENT = "genreg"
STATUS_LABELS = {"SCHEDULED": "queued", "RUNNING": "running", "FINISHED": "finished", "KILLED": "stopped",
                 "FAILED": "failed"}
EPOCH_KEYS = ("train_loss", "val_loss", "val_accuracy", "test_accuracy")
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{32}")  # MLflow run ids: uuid4 hex
SQLITE_HEADER = b"SQLite format 3\x00"
SERVER_TIMEOUT_S = 5.0  # a tracking server that does not answer its health check within this is unreachable


class StoreError(ValueError):
    """The run store's database cannot be used: damaged, locked, or not a file."""


def _store_error(db: Path, exc: BaseException) -> StoreError | None:
    """A :class:`StoreError` when ``exc`` comes from the database itself, else None (e.g. an unknown run id)."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    chain, cause = [], exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    from_db = any(isinstance(e, (SQLAlchemyError, sqlite3.Error)) for e in chain)
    if not from_db and getattr(exc, "error_code", None) != "TEMPORARILY_UNAVAILABLE":
        return None
    text = str(chain[-1]).splitlines()[0] if str(chain[-1]) else type(chain[-1]).__name__
    state = "locked by another process" if "locked" in text or "busy" in text else "damaged"
    return StoreError(f"the run store at {db} is {state} ({text[:200]})")


def _guarded(fn, db: Path):
    """``fn`` with database failures raised as :class:`StoreError`."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            error = _store_error(db, exc)
            if error is None:
                raise
            raise error from exc

    return call


class _GuardedClient:
    """An MLflow client whose database failures surface as :class:`StoreError`."""

    def __init__(self, client, db: Path):
        self._client, self._db = client, db

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        return _guarded(attr, self._db) if callable(attr) else attr


@dataclass
class RunSpec:
    """Everything a worker needs to execute a run."""

    train: TrainConfig
    data: DataConfig
    generator: str | None = None  # generator source (None: the shipped model)
    device: str = "auto"

    def to_json(self) -> str:
        return json.dumps({"train": asdict(self.train), "data": asdict(self.data), "generator": self.generator,
                           "device": self.device}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        from genreg_core.config import config_from_dict

        raw = json.loads(text)
        return cls(config_from_dict(TrainConfig, raw["train"]), config_from_dict(DataConfig, raw["data"]),
                   raw.get("generator"), raw.get("device", "auto"))


@dataclass
class RunSummary:
    """One row of the run table."""

    run_id: str
    name: str
    status: str  # queued | running | finished | stopped | failed
    method: str
    per_class: str
    seed: int
    epochs: int
    epoch: int  # epochs completed so far
    best_val_loss: float | None
    test_accuracy: float | None
    start_time: float  # seconds since the epoch
    end_time: float | None
    error: str | None
    generator_regime: str = "pool"  # pool | own
    generator_progress: str | None = None  # own regime: "step/total" while its generator trains, then trained|cached
    dataset: str = "digits"  # the data config's name
    generator: str = "shipped"  # the generator source (shipped, shipped-early, a folder or hub id)
    generator_fidelity: float | None = None  # its recorded class fidelity (the quality dial), when measured

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunStore:
    """Thin wrapper over an MLflow client bound to one GENREG_HOME."""

    def __init__(self, home: str | Path | None = None, tracking_uri: str | None = None):
        """The store of ``home`` (default ``genreg_home()``). ``tracking_uri`` names another MLflow tracking store
        (a server's ``http(s)://`` address, or ``sqlite:///path``); without it, ``MLFLOW_TRACKING_URI`` is used when
        ``home`` is not given, else ``home``'s own ``mlflow.db``."""
        self.home = Path(home) if home is not None else genreg_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot use {self.home} as the genreg home folder: {exc.strerror or exc}") from exc
        if tracking_uri is None and home is None:
            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None
        self.tracking_uri = check_tracking_uri(tracking_uri) if tracking_uri else None
        if self.tracking_uri is None or self.tracking_uri.startswith("sqlite:///"):
            self.db_path = (Path(self.tracking_uri[len("sqlite:///"):]) if self.tracking_uri
                            else self.home / "mlflow.db").resolve()
            self.tracking_uri = f"sqlite:///{self.db_path}"
        else:
            self.db_path = None  # a tracking server: no database file here
        self._client = None
        self._experiment_id: str | None = None

    @property
    def location(self) -> str:
        """Where the runs are recorded, for messages: the database file or the server's address."""
        return str(self.db_path or self.tracking_uri)

    @property
    def is_remote(self) -> bool:
        """Whether the runs are recorded by a tracking server rather than an SQLite file on this machine."""
        return self.db_path is None

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            where = self.db_path or self.tracking_uri
            if self.is_remote:
                check_server(self.tracking_uri)
                client = _guarded(MlflowClient, where)(tracking_uri=self.tracking_uri)
            else:
                self._check_database()
                with _exclusive(self.db_path.with_name(self.db_path.name + ".lock")):  # one process creates tables
                    client = _guarded(MlflowClient, where)(tracking_uri=self.tracking_uri)
                    _guarded(client.search_experiments, where)(max_results=1)  # opens (or creates) the schema
            self._client = _GuardedClient(client, where)
        return self._client

    def _check_database(self) -> None:
        """Refuse a ``mlflow.db`` that is not an SQLite file, so MLflow never writes over it."""
        db = self.db_path
        if not db.exists() and not db.is_symlink():
            return
        if not db.is_file():
            raise StoreError(f"the run store at {db} is damaged (it is not a file); move it away to start a new store")
        try:
            with db.open("rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"the run store at {db} is damaged ({exc.strerror or exc})") from exc
        if header and header != SQLITE_HEADER:
            raise StoreError(f"the run store at {db} is damaged (not an SQLite database); genreg leaves it "
                             "untouched: move it away to start a new store")

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                # a server keeps the artifacts itself (``mlflow server`` serves them); a local store beside its db
                location = None if self.is_remote else (self.home / "artifacts").resolve().as_uri()
                try:
                    self._experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=location)
                except Exception:  # another process created it first
                    self._experiment_id = self.client.get_experiment_by_name(EXPERIMENT).experiment_id
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def check_run_id(self, run_id: str) -> str:
        """``run_id`` if it has the form of a run id (so it cannot name a path), else ``ValueError``."""
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
            raise ValueError(f"no run {run_id!r} in the run store at {self.location} (run ids are 32 hex digits)")
        return run_id

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / self.check_run_id(run_id)

    def create_run(self, spec: RunSpec, status: str = "SCHEDULED", tags: dict[str, str] | None = None) -> str:
        """Record a new run with its params, config and extra ``tags``; returns the run id."""
        from genreg_core.training.loop import check_train_config

        check_train_config(spec.train)
        train = spec.train
        name = f"{train.method}-{train.per_class or 'all'}pc-s{train.seed}" + ("-own" if train.generator_regime == "own"
                                                                              else "")
        tags = {"genreg.method": train.method, "genreg.init": train.init,
                "genreg.per_class": str(train.per_class or "all"), "genreg.seed": str(train.seed),
                "genreg.dataset": spec.data.name, "genreg.generator_regime": train.generator_regime, **(tags or {})}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        try:
            self._record_spec(run_id, spec)
        except Exception as exc:
            self.mark_failed(run_id, f"the run could not be recorded: {type(exc).__name__}: {exc}")
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"run {run_id} could not be recorded: {exc}") from exc
        self.client.update_run(run_id, status=status)
        return run_id

    def _record_spec(self, run_id: str, spec: RunSpec) -> None:
        from mlflow.entities import Param

        params = {**_flat_params("train", asdict(spec.train)), **_flat_params("data", asdict(spec.data)),
                  "generator": spec.generator or "shipped", "device": spec.device}
        self.client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run_config.json").write_text(spec.to_json())
        self.client.log_artifact(run_id, str(folder / "run_config.json"))

    def mark_failed(self, run_id: str, error: str) -> None:
        """Record ``error`` and end the run as FAILED (text that cannot be stored is escaped). Two processes that
        find the same dead worker at once both mark it: the second one's tag insert then hits the first one's row,
        which already holds the error, and is not an error."""
        try:
            self.client.set_tag(run_id, "genreg.error", error.encode("utf-8", "backslashreplace").decode()[:4900])
        except StoreError as exc:
            if "UNIQUE constraint failed" not in str(exc):
                raise
        self.client.set_terminated(run_id, "FAILED")

    def load_spec(self, run_id: str) -> RunSpec:
        """The run's config: from its folder, or (a worker on another machine) from the store's artifact, which is
        then kept in the folder."""
        path = self.run_dir(run_id) / "run_config.json"
        if not path.exists():
            try:
                fetched = Path(self.client.download_artifacts(run_id, "run_config.json", str(self.run_dir(run_id))))
            except Exception as exc:
                raise ValueError(f"run {run_id} has no config at {path} nor in the store ({exc})") from exc
            if fetched != path:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(fetched.read_text())
        return RunSpec.from_json(path.read_text())

    def request_stop(self, run_id: str) -> None:
        """Ask the run's worker to stop; honoured within one training step (or before a queued run starts)."""
        self.get_run(run_id)
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "STOP").touch()

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "STOP").exists()

    def delete_run(self, run_id: str) -> None:
        """Stop the run if it is live and remove it from the store (MLflow soft delete)."""
        self.request_stop(run_id)
        self.client.delete_run(run_id)

    def get_run(self, run_id: str):
        """The MLflow run ``run_id``; ``ValueError`` for a malformed, unknown or deleted id."""
        from mlflow.exceptions import MlflowException

        self.check_run_id(run_id)
        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            run = None
        if run is None or run.info.lifecycle_stage == "deleted":
            raise ValueError(f"no run {run_id!r} in the run store at {self.location}")
        return run

    def list_runs(self, max_results: int = 500) -> list[RunSummary]:
        """Active runs, newest first; live runs whose worker died are marked failed."""
        runs = self.client.search_runs([self.experiment_id], max_results=max_results,
                                       order_by=["attributes.start_time DESC"])
        return [self._summary(run) for run in runs]

    def summary(self, run_id: str) -> RunSummary:
        return self._summary(self.get_run(run_id))

    def _summary(self, run) -> RunSummary:
        info, data = run.info, run.data
        status, error = info.status, data.tags.get("genreg.error")
        on_this_machine = data.tags.get("genreg.host", socket.gethostname()) == socket.gethostname()
        if status in ("RUNNING", "SCHEDULED") and on_this_machine and not worker_alive(
                data.tags.get("genreg.pid"), data.tags.get("genreg.pid_start")):
            status, error = self._mark_orphan(info.run_id, data.tags.get("genreg.pid"), status)
        return RunSummary(
            run_id=info.run_id, name=info.run_name or info.run_id[:8], status=STATUS_LABELS.get(status, status.lower()),
            method=data.tags.get("genreg.method", "?"), per_class=data.tags.get("genreg.per_class", "?"),
            seed=int(data.tags.get("genreg.seed", 0)), epochs=int(data.params.get("train.epochs", 0)),
            epoch=int(data.metrics.get("epoch", 0)), best_val_loss=data.metrics.get("best_val_loss"),
            test_accuracy=data.metrics.get("test_accuracy_at_best"), start_time=info.start_time / 1000,
            end_time=info.end_time / 1000 if info.end_time else None, error=error,
            generator_regime=data.params.get("train.generator_regime", "pool"),
            generator_progress=data.tags.get("genreg.generator_progress"),
            dataset=data.tags.get("genreg.dataset", "digits"), generator=data.params.get("generator", "shipped"),
            generator_fidelity=data.metrics.get("generator_fidelity"))

    def record_worker(self, run_id: str, pid: int) -> None:
        """Record the process working on ``run_id`` and its machine, with its start time so a later process that
        reuses the pid is not taken for it (a worker on another machine is not checked from here)."""
        from mlflow.entities import RunTag

        start = process_start(pid)
        tags = [RunTag("genreg.pid", str(pid)), RunTag("genreg.host", socket.gethostname())]
        tags += [RunTag("genreg.pid_start", start)] if start is not None else []
        self.client.log_batch(run_id, tags=tags)  # one store write

    def _mark_orphan(self, run_id: str, pid: str | None, status: str) -> tuple[str, str | None]:
        """A live-looking run without a live worker: stopped if it never started and was stopped, else failed."""
        if pid is None:  # no worker has picked it up yet
            if self.stop_requested(run_id):
                self.client.set_terminated(run_id, "KILLED")
                return "KILLED", None
            return status, None
        error = "the worker process ended without recording a result"
        last = last_line(self.run_dir(run_id) / "worker.log")
        if last:
            error += f"; its log ends with: {last}"
        self.mark_failed(run_id, error)
        return "FAILED", error

    def runs_tagged(self, key: str, values: set[str] | None = None) -> list[tuple[str, RunSummary]]:
        """``(tag value, run)`` of every active run with tag ``key`` (among ``values`` when given), newest first."""
        found, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{key}` LIKE '%'",
                                           max_results=1000, order_by=["attributes.start_time DESC"],
                                           page_token=token)
            found += [run for run in page if values is None or run.data.tags.get(key) in values]
            token = page.token
            if not token:
                break
        return [(run.data.tags[key], self._summary(run)) for run in found]

    def history(self, run_id: str, keys: tuple[str, ...] = EPOCH_KEYS) -> dict[str, list[tuple[int, float]]]:
        """Per-epoch (or per-step) metric series: ``{key: [(step, value), ...]}``."""
        self.check_run_id(run_id)
        out = {}
        for key in keys:
            series = self.client.get_metric_history(run_id, key)
            out[key] = sorted((m.step, m.value) for m in series)
        return out

    def metric_keys(self, run_id: str) -> list[str]:
        return sorted(self.get_run(run_id).data.metrics)

    def n_snapshots(self, run_id: str) -> int:
        """How many epoch snapshots the run has written so far (cheap; a cache key for replays)."""
        return len(list((self.run_dir(run_id) / "snapshots").glob("epoch_*.safetensors")))

    def load_snapshots(self, run_id: str) -> list[dict[str, Any]]:
        """The run's per-epoch snapshots in epoch order (safetensors; never unpickled)."""
        from safetensors.torch import load_file

        self.get_run(run_id)
        paths = sorted((self.run_dir(run_id) / "snapshots").glob("epoch_*.safetensors"))
        try:
            return [load_file(path) for path in paths]
        except Exception as exc:
            raise ValueError(f"cannot read the snapshots of run {run_id}: {exc}") from exc

    def artifact_dir(self, run_id: str) -> Path:
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        uri = self.get_run(run_id).info.artifact_uri
        return Path(url2pathname(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def check_tracking_uri(uri: str) -> str:
    """``uri`` if it names a tracking store genreg can use (``sqlite:///``, ``http(s)://``), else ``ValueError``."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
        return uri
    if parsed.scheme in ("http", "https") and parsed.hostname:
        return uri.rstrip("/")
    raise ValueError(f"tracking URI {uri!r} is neither sqlite:///PATH nor http(s)://HOST[:PORT] (an MLflow server)")


def check_server(uri: str, timeout: float = SERVER_TIMEOUT_S) -> None:
    """``ValueError`` unless the MLflow tracking server at ``uri`` answers its ``/health`` check within ``timeout``."""
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        with urlopen(f"{uri}/health", timeout=timeout) as response:  # noqa: S310 - http(s) only (check_tracking_uri)
            answer = response.read(64)
    except (URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ValueError(f"the MLflow tracking server at {uri} cannot be reached ({reason}); start it with "
                         "`mlflow server --backend-store-uri sqlite:///PATH/mlflow.db` or fix --tracking-uri / "
                         "MLFLOW_TRACKING_URI") from exc
    if answer.strip() != b"OK":
        raise ValueError(f"{uri} answers, but not as an MLflow tracking server (its /health said {answer[:40]!r})")


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An exclusive ``flock`` on ``lock_path`` for the block: two processes opening a new SQLite store at once would
    both create MLflow's tables, and one of them would find the half-made schema "damaged"."""
    import fcntl

    try:
        handle = open(lock_path, "a")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise StoreError(f"the run store at {lock_path.parent} cannot be written: {exc.strerror or exc} (point "
                         "GENREG_HOME at a folder you can write to)") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _flat_params(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """``{"mgr": {"weight": 1}}`` -> ``{"train.mgr.weight": 1}``: one MLflow param per leaf of a nested config."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        out.update(_flat_params(name, value) if isinstance(value, dict) else {name: value})
    return out


def summarize_runs(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """Test accuracy mean ± std (and run count) per dataset, generator (with its recorded class fidelity), method,
    setting and generator regime, over finished runs (runs on different data or generators are never averaged
    together); the std is the sample std (ddof 1, ``evaluation.statistics.mean_sd``; nan for one run)."""
    import numpy as np

    from genreg_core.evaluation.statistics import mean_sd

    groups: dict[tuple[str, str, str, str, str], list[RunSummary]] = {}
    for run in runs:
        if run.status == "finished" and run.test_accuracy is not None:
            key = (run.dataset, run.generator, run.method, run.per_class, run.generator_regime)
            groups.setdefault(key, []).append(run)
    rows = []
    for (dataset, generator, method, per_class, regime), members in sorted(groups.items()):
        acc = np.array([r.test_accuracy for r in members])
        fidelity = {r.generator_fidelity for r in members}
        rows.append({"dataset": dataset, "generator": generator, "method": method, "per_class": per_class,
                     "generator_regime": regime, "generator_fidelity": fidelity.pop() if len(fidelity) == 1 else None,
                     "runs": len(members), "test_accuracy_mean": float(acc.mean()),
                     "test_accuracy_std": mean_sd(acc.tolist())[1],
                     "seeds": sorted(r.seed for r in members)})
    return rows

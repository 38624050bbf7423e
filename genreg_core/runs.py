"""The run store: every classifier run is an MLflow run in a SQLite tracking store under GENREG_HOME.

Layout under ``$GENREG_HOME`` (default ``~/.genreg``):
``mlflow.db`` (tracking store; ``mlflow ui --backend-store-uri sqlite:///…/mlflow.db`` shows the runs),
``artifacts/`` (snapshots, final classifier, all safetensors) and ``runs/<run_id>/`` (the run's config,
its stop flag and its worker log). Statuses follow MLflow: SCHEDULED (queued), RUNNING, FINISHED,
KILLED (stopped by the user), FAILED (crash or non-finite loss, with the error text in a tag).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genreg_core.config import DataConfig, TrainConfig
from genreg_core.lab import genreg_home

EXPERIMENT = "genreg"
STATUS_LABELS = {"SCHEDULED": "queued", "RUNNING": "running", "FINISHED": "finished", "KILLED": "stopped",
                 "FAILED": "failed"}
EPOCH_KEYS = ("train_loss", "val_loss", "val_accuracy", "test_accuracy")


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunStore:
    """Thin wrapper over an MLflow client bound to one GENREG_HOME."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home) if home is not None else genreg_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = f"sqlite:///{(self.home / 'mlflow.db').resolve()}"
        self._client = None
        self._experiment_id: str | None = None

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        EXPERIMENT, artifact_location=(self.home / "artifacts").resolve().as_uri())
                except Exception:  # another process created it first
                    self._experiment_id = self.client.get_experiment_by_name(EXPERIMENT).experiment_id
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    def create_run(self, spec: RunSpec, status: str = "SCHEDULED") -> str:
        """Record a new run with its params and config; returns the run id."""
        train = spec.train
        name = f"{train.method}-{train.per_class or 'all'}pc-s{train.seed}" + ("-own" if train.generator_regime == "own"
                                                                              else "")
        tags = {"genreg.method": train.method, "genreg.init": train.init,
                "genreg.per_class": str(train.per_class or "all"), "genreg.seed": str(train.seed),
                "genreg.dataset": spec.data.name, "genreg.generator_regime": train.generator_regime}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        params = {**{f"train.{k}": v for k, v in asdict(train).items()},
                  **{f"data.{k}": v for k, v in asdict(spec.data).items()},
                  "generator": spec.generator or "shipped", "device": spec.device}
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run_config.json").write_text(spec.to_json())
        self.client.log_artifact(run_id, str(folder / "run_config.json"))
        self.client.update_run(run_id, status=status)
        return run_id

    def load_spec(self, run_id: str) -> RunSpec:
        path = self.run_dir(run_id) / "run_config.json"
        if not path.exists():
            raise ValueError(f"run {run_id} has no config at {path}")
        return RunSpec.from_json(path.read_text())

    def request_stop(self, run_id: str) -> None:
        """Ask the run's worker to stop; honoured within one training step (or before a queued run starts)."""
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
        try:
            return self.client.get_run(run_id)
        except Exception as exc:
            raise ValueError(f"no run {run_id!r} in {self.tracking_uri}") from exc

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
        if status in ("RUNNING", "SCHEDULED") and not _worker_alive(data.tags.get("genreg.pid")):
            status, error = self._mark_orphan(info.run_id, data.tags.get("genreg.pid"), status)
        return RunSummary(
            run_id=info.run_id, name=info.run_name or info.run_id[:8], status=STATUS_LABELS.get(status, status.lower()),
            method=data.tags.get("genreg.method", "?"), per_class=data.tags.get("genreg.per_class", "?"),
            seed=int(data.tags.get("genreg.seed", 0)), epochs=int(data.params.get("train.epochs", 0)),
            epoch=int(data.metrics.get("epoch", 0)), best_val_loss=data.metrics.get("best_val_loss"),
            test_accuracy=data.metrics.get("test_accuracy_at_best"), start_time=info.start_time / 1000,
            end_time=info.end_time / 1000 if info.end_time else None, error=error,
            generator_regime=data.params.get("train.generator_regime", "pool"),
            generator_progress=data.tags.get("genreg.generator_progress"))

    def _mark_orphan(self, run_id: str, pid: str | None, status: str) -> tuple[str, str | None]:
        """A live-looking run without a live worker: stopped if it never started and was stopped, else failed."""
        if pid is None:  # no worker has picked it up yet
            if self.stop_requested(run_id):
                self.client.set_terminated(run_id, "KILLED")
                return "KILLED", None
            return status, None
        error = "the worker process ended without recording a result"
        self.client.set_tag(run_id, "genreg.error", error)
        self.client.set_terminated(run_id, "FAILED")
        return "FAILED", error

    def history(self, run_id: str, keys: tuple[str, ...] = EPOCH_KEYS) -> dict[str, list[tuple[int, float]]]:
        """Per-epoch (or per-step) metric series: ``{key: [(step, value), ...]}``."""
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


def _worker_alive(pid: str | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def summarize_runs(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """Test accuracy mean ± std (and run count) per method, setting and generator regime, over finished runs."""
    import numpy as np

    groups: dict[tuple[str, str, str], list[RunSummary]] = {}
    for run in runs:
        if run.status == "finished" and run.test_accuracy is not None:
            groups.setdefault((run.method, run.per_class, run.generator_regime), []).append(run)
    rows = []
    for (method, per_class, regime), members in sorted(groups.items()):
        acc = np.array([r.test_accuracy for r in members])
        rows.append({"method": method, "per_class": per_class, "generator_regime": regime, "runs": len(members),
                     "test_accuracy_mean": float(acc.mean()), "test_accuracy_std": float(acc.std(ddof=0)),
                     "seeds": sorted(r.seed for r in members)})
    return rows

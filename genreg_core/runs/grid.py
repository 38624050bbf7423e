"""Grids of classifier runs: methods × images per class × seeds (× inits × generator regimes), on an engine.

A grid expands into cells; each cell is one run of the run store, tagged ``genreg.cell`` with a digest of its
whole config, so a cell already FINISHED in the store is skipped and an interrupted grid resumes where it
stopped. The rest runs on an engine (``genreg_core.runs.engines``): ``local`` (this machine's background
workers) or ``ray`` (one Ray task per run). A run that fails is retried ``retries`` times, each attempt a new
run of the store, then the cell is FAILED with the error. Methods that use no generator (ce, randreg,
adarand) run once per init and count under every regime, as in the reproduction protocol
(docs/results.md): every cell of a dataset trains, selects and tests on one fixed split (the data config's
split seed), whatever its seed; the seed varies the labelled subset, the initialisation and the noise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from genreg_core.config import DataConfig, TrainConfig, override
from genreg_core.runs.store import RunSpec, RunStore

COST_ORDER = ("ce", "randreg", "adarand", "gda", "mgr", "mgr+adarand", "semantic", "gssl")  # cheap methods first
CellStatus = Literal["left", "running", "finished", "failed"]
DEFAULT_RETRIES = 1  # attempts after the first


@dataclass(frozen=True)
class Cell:
    """One run of a grid."""

    method: str
    per_class: int | None  # None = all
    seed: int
    init: str = "scratch"
    regime: str = "pool"

    def label(self) -> str:
        return f"{self.method}/{self.per_class or 'all'}pc/s{self.seed}/{self.init}/{self.regime}"


@dataclass
class GridSpec:
    """What a grid runs: the axes, and the config every cell shares."""

    methods: tuple[str, ...]  # names of training.methods.METHODS
    per_class: tuple[int | None, ...]  # real images per class; None = all
    seeds: tuple[int, ...]  # seeds of the runs: the labelled subset, the initialisation, the noise
    inits: tuple[str, ...] = ("scratch",)  # scratch | pretrained
    regimes: tuple[str, ...] = ("pool",)  # pool | own
    epochs: int = 30  # epochs of every run
    data: DataConfig = field(default_factory=DataConfig)  # the dataset (its split_seed is replaced, see below)
    split_seed: int | None = None  # None: the data config's split seed, one fixed split for every cell
    base: TrainConfig = field(default_factory=TrainConfig)  # the shared hyper-parameters (TrainConfig.tiny for tests)
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted TrainConfig fields set on every cell
    generator: str | None = None  # generator source (None: the shipped model)
    device: str = "auto"  # device of every run


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["mgr.weight=0.5", ...]`` -> {dotted TrainConfig field: value}; ``ValueError`` for an unknown field."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE with a TrainConfig field, got {item!r}")
        override(TrainConfig(), key, None)  # ValueError for a path that names no field
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def expand_cells(grid: GridSpec) -> list[Cell]:
    """The grid's cells, cheap methods first; ``ValueError`` for an empty axis or an unknown method."""
    from genreg_core.training.methods import GENERATOR_METHODS, METHODS

    for name, axis in (("methods", grid.methods), ("per-class settings", grid.per_class), ("seeds", grid.seeds),
                       ("inits", grid.inits), ("regimes", grid.regimes)):
        if not axis:
            raise ValueError(f"a grid needs at least one of its {name}")
    for method in grid.methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    methods = [m for m in COST_ORDER if m in grid.methods] + [m for m in grid.methods if m not in COST_ORDER]
    cells = []
    for method in dict.fromkeys(methods):
        regimes = grid.regimes if method in GENERATOR_METHODS else grid.regimes[:1]
        for init in dict.fromkeys(grid.inits):
            for regime in dict.fromkeys(regimes):
                for n in dict.fromkeys(grid.per_class):
                    cells += [Cell(method, n, seed, init, regime) for seed in dict.fromkeys(grid.seeds)]
    return cells


def cell_spec(grid: GridSpec, cell: Cell) -> RunSpec:
    """The run of ``cell``: the grid's base config with its overrides, then the cell's axes."""
    train = grid.base
    for key, value in grid.overrides.items():
        train = override(train, key, value)
    train = dataclasses.replace(train, method=cell.method, per_class=cell.per_class, seed=cell.seed, init=cell.init,
                                generator_regime=cell.regime, epochs=grid.epochs)
    split_seed = grid.data.split_seed if grid.split_seed is None else grid.split_seed
    return RunSpec(train, dataclasses.replace(grid.data, split_seed=split_seed), grid.generator, grid.device)


def cell_key(spec: RunSpec) -> str:
    """A digest of everything that decides a run's result (config, data, generator; not the device)."""
    payload = json.dumps({"train": asdict(spec.train), "data": asdict(spec.data), "generator": spec.generator},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def grid_key(keys: list[str]) -> str:
    """The grid's id: a digest of its cells' keys (the same cells, the same grid)."""
    return hashlib.sha256(" ".join(sorted(keys)).encode()).hexdigest()[:12]


@dataclass
class CellState:
    """A cell's progress: its latest run, its attempts, and its result once FINISHED."""

    cell: Cell
    spec: RunSpec
    key: str
    status: CellStatus = "left"
    run_id: str | None = None
    attempts: int = 0
    skipped: bool = False  # finished before this grid started (found in the store)
    error: str | None = None
    test_accuracy: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    final: dict[str, float] = field(default_factory=dict)  # the run's end metrics (best epoch, val numbers, labels)

    def row(self) -> dict[str, Any]:
        """The reproduction grid's row of a finished cell (``experiments/results/*.jsonl``): its axes, the test
        accuracy at the best validation-loss epoch, the selection numbers, the labelled images each loss saw
        (``n_ce_labels``, ``n_meta_labels``), the number of images it was scored on (``n_test``), the data and,
        for a method with a generator, a non-default one."""
        from genreg_core.training.methods import GENERATOR_METHODS

        row = {"init": self.cell.init, "regime": self.cell.regime, "method": self.cell.method,
               "per_class": self.cell.per_class, "seed": self.cell.seed, "epochs": self.spec.train.epochs,
               "test_accuracy": self.test_accuracy, "dataset": self.spec.data.name,
               "split_seed": self.spec.data.split_seed, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
               "run_id": self.run_id}
        for key, name in (("best_epoch", "best_epoch"), ("val_accuracy_at_best", "val_accuracy"),
                          ("best_val_loss", "best_val_loss"), ("n_ce_labels", "n_ce_labels"),
                          ("n_meta_labels", "n_meta_labels"), ("n_test_images", "n_test")):
            if key in self.final:
                value = self.final[key]
                row[name] = int(value) if key.startswith(("n_", "best_epoch")) else value
        if self.spec.generator is not None and self.cell.method in GENERATOR_METHODS:
            row["generator"] = self.spec.generator
        return row

    def as_dict(self) -> dict[str, Any]:
        return {**self.row(), "status": self.status, "attempts": self.attempts, "skipped": self.skipped,
                "error": self.error}


@dataclass
class GridProgress:
    done: int
    running: int
    failed: int
    left: int

    def line(self) -> str:
        return f"grid: {self.done} done / {self.running} running / {self.failed} failed / {self.left} left"


@dataclass
class GridResult:
    grid_id: str
    cells: list[CellState]
    ran: int  # runs started by this call, retries included

    @property
    def progress(self) -> GridProgress:
        return progress_of(self.cells)

    def rows(self) -> list[dict[str, Any]]:
        """One row per finished cell."""
        return [c.row() for c in self.cells if c.status == "finished"]


def progress_of(cells: list[CellState]) -> GridProgress:
    count = {s: sum(c.status == s for c in cells) for s in ("finished", "running", "failed", "left")}
    return GridProgress(count["finished"], count["running"], count["failed"], count["left"])


def plan_grid(store: RunStore, grid: GridSpec,
              exclude: Callable[[Cell], bool] | None = None) -> tuple[str, list[CellState]]:
    """The grid's id and its cells (less those ``exclude`` names: results kept elsewhere), those with a FINISHED
    run in the store already marked finished (skipped)."""
    states = []
    for cell in expand_cells(grid):
        if exclude is not None and exclude(cell):
            continue
        spec = cell_spec(grid, cell)
        states.append(CellState(cell, spec, cell_key(spec)))
    recorded = {}
    for key, run in store.runs_tagged("genreg.cell", {s.key for s in states}):
        if run.status == "finished":
            recorded.setdefault(key, run)  # newest first: the latest finished run
    for state in states:
        run = recorded.get(state.key)
        if run is not None:
            _finish(store, state, run.run_id)
            state.skipped = True
    return grid_key([s.key for s in states]), states


def _finish(store: RunStore, state: CellState, run_id: str) -> None:
    metrics = store.get_run(run_id).data.metrics
    state.status, state.run_id, state.error = "finished", run_id, None
    state.final = {k: metrics[k] for k in ("best_epoch", "val_accuracy_at_best", "best_val_loss", "n_ce_labels",
                                           "n_meta_labels", "n_test_images") if k in metrics}
    state.test_accuracy = metrics.get("test_accuracy_at_best")
    state.seconds, state.cpu_seconds = metrics.get("run_seconds"), metrics.get("run_cpu_seconds")


def run_grid(store: RunStore, grid: GridSpec, engine, retries: int = DEFAULT_RETRIES,
             on_progress: Callable[[GridProgress], None] | None = None, poll_seconds: float = 1.0,
             exclude: Callable[[Cell], bool] | None = None,
             on_cell: Callable[[CellState], None] | None = None) -> GridResult:
    """Run every cell of ``grid`` not yet finished in ``store`` (nor named by ``exclude``) on ``engine``
    (``runs.engines``) and wait for all.

    ``on_progress`` is called with the counts whenever they change, ``on_cell`` with each cell that finishes here.
    A run that ends FAILED (a crash, a killed worker) is retried up to ``retries`` times as a new run; a run
    stopped by the user is not retried.
    """
    if retries < 0:
        raise ValueError(f"retries must be at least 0, got {retries}")
    grid_id, states = plan_grid(store, grid, exclude)
    by_run: dict[str, CellState] = {}
    pending = [s for s in states if s.status == "left"]
    ran, last = 0, None

    def report() -> None:
        nonlocal last
        progress = progress_of(states)
        if on_progress is not None and progress != last:
            on_progress(progress)
        last = progress

    try:
        report()
        while pending or by_run:
            while pending and engine.has_room(len(by_run)):
                state = pending.pop(0)
                state.attempts += 1
                tags = {"genreg.cell": state.key, "genreg.grid": grid_id, "genreg.attempt": str(state.attempts)}
                state.run_id, state.status = store.create_run(state.spec, tags=tags), "running"
                by_run[state.run_id] = state
                engine.submit(state.run_id)
                ran += 1
            report()
            for run_id, error in engine.ended(list(by_run)).items():
                state = by_run.pop(run_id)
                if _settle(store, state, run_id, error) and state.attempts <= retries:
                    state.status = "left"
                    pending.insert(0, state)
                elif state.status == "finished" and on_cell is not None:
                    on_cell(state)
            report()
            if by_run:
                time.sleep(poll_seconds)
    finally:
        engine.close()
    return GridResult(grid_id, states, ran)


def _settle(store: RunStore, state: CellState, run_id: str, error: str | None) -> bool:
    """Record how ``run_id`` ended in ``state``; True when it failed in a way worth a retry."""
    summary = store.summary(run_id)
    if summary.status in ("queued", "running"):  # its worker died before it could record the end
        store.mark_failed(run_id, error or "the run ended without recording a result")
        summary = store.summary(run_id)
    if summary.status == "finished":
        _finish(store, state, run_id)
        return False
    state.status, state.error = "failed", summary.error or error or summary.status
    return summary.status == "failed"


def grid_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test accuracy mean ± sample std (ddof = 1, ``evaluation.statistics.mean_sd``, as every report and claim) per
    init, regime, method and setting; the std is None for a single run. Methods without a generator count under
    every regime present."""
    from genreg_core.evaluation.statistics import mean_sd
    from genreg_core.training.methods import GENERATOR_METHODS

    regimes = sorted({r["regime"] for r in rows})
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        for regime in [r["regime"]] if r["method"] in GENERATOR_METHODS else regimes:
            groups.setdefault((r["init"], regime, r["method"], r["per_class"]), []).append(r["test_accuracy"])
    order = {m: i for i, m in enumerate(COST_ORDER)}
    out = []
    for (init, regime, method, n), acc in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1], order.get(kv[0][2], len(order)), kv[0][3] is None, kv[0][3] or 0)):
        mean, sd, runs = mean_sd(acc)
        out.append({"init": init, "regime": regime, "method": method, "per_class": n, "runs": runs,
                    "test_accuracy_mean": mean, "test_accuracy_std": sd if runs > 1 else None})
    return out


def format_grid_table(table: list[dict[str, Any]]) -> str:
    """``grid_table`` as markdown: one table per init and regime, methods × settings, accuracy in %; a single run
    has no spread."""
    from genreg_core.evaluation.statistics import SPREAD_NOTE

    def cell(row: dict[str, Any]) -> str:
        spread = "" if row["test_accuracy_std"] is None else f" ± {100 * row['test_accuracy_std']:.1f}"
        return f"{100 * row['test_accuracy_mean']:.1f}{spread} ({row['runs']})"

    lines = []
    for init, regime in dict.fromkeys((r["init"], r["regime"]) for r in table):
        part = [r for r in table if (r["init"], r["regime"]) == (init, regime)]
        settings = list(dict.fromkeys(sorted((r["per_class"] for r in part), key=lambda n: (n is None, n or 0))))
        lines += [f"init = {init}, generator regime = {regime}: test accuracy (%) mean ± std (runs); {SPREAD_NOTE}", "",
                  "| method | " + " | ".join(f"{n or 'all'} / class" for n in settings) + " |",
                  "|---" * (len(settings) + 1) + "|"]
        for method in dict.fromkeys(r["method"] for r in part):
            cells = {r["per_class"]: r for r in part if r["method"] == method}
            lines.append(f"| {method} | " + " | ".join(cell(cells[n]) if n in cells else "–" for n in settings) + " |")
        lines.append("")
    return "\n".join(lines)


def grid_to_json(grid: GridSpec) -> str:
    return json.dumps(asdict(grid), indent=2, default=str)


def grid_from_json(text: str) -> GridSpec:
    from genreg_core.config import config_from_dict

    raw = json.loads(text)
    axes = {k: tuple(raw[k]) for k in ("methods", "per_class", "seeds", "inits", "regimes")}
    return GridSpec(**axes, epochs=raw["epochs"], data=config_from_dict(DataConfig, raw["data"]),
                    split_seed=raw["split_seed"], base=config_from_dict(TrainConfig, raw["base"]),
                    overrides=raw["overrides"], generator=raw["generator"], device=raw["device"])


def grid_status(store: RunStore, grid: GridSpec) -> tuple[str, list[CellState]]:
    """The grid's id and each cell's state as the store has it now (for a grid running in another process): a
    cell is finished with a FINISHED run, running with a live one, failed when its newest run failed, else left."""
    grid_id, states = plan_grid(store, grid)
    newest: dict[str, Any] = {}
    for key, run in store.runs_tagged("genreg.cell", {s.key for s in states if s.status == "left"}):
        newest.setdefault(key, run)
    for state in states:
        run = newest.get(state.key)
        if state.status == "left" and run is not None:
            state.run_id = run.run_id
            state.status = "running" if run.status in ("queued", "running") else "failed"
            state.error = run.error
    return grid_id, states


def launch_grid(store: RunStore, grid: GridSpec, engine: str = "local", resources: str = "cpu=1,gpu=0",
                address: str | None = None, retries: int = DEFAULT_RETRIES) -> str:
    """Run ``grid`` in a detached background process (``python -m genreg_core.runs.grid``) that outlives the caller
    (the app); returns the grid's id. Its log is ``$GENREG_HOME/grids/<id>/grid.log``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from genreg_core.runs.engines import check_engine, parse_resources

    parse_resources(resources)
    check_engine(engine, address)
    grid_id, _ = plan_grid(store, grid)
    folder = store.home / "grids" / grid_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.json").write_text(grid_to_json(grid))
    command = [sys.executable, "-m", "genreg_core.runs.grid", str(folder / "grid.json"), "--engine", engine,
               "--resources-per-run", resources, "--retries", str(retries)]
    command += ["--address", address] if address else []
    env = dict(os.environ, GENREG_HOME=str(store.home), MLFLOW_TRACKING_URI=store.tracking_uri)
    with open(folder / "grid.log", "w") as log:
        subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                         start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]))
    return grid_id


def main(argv: list[str] | None = None) -> int:
    """``python -m genreg_core.runs.grid GRID_JSON``: run a saved grid to its end (what ``launch_grid`` starts)."""
    import argparse
    import sys
    from pathlib import Path

    from genreg_core.runs.engines import ENGINES, make_engine, parse_resources

    parser = argparse.ArgumentParser(prog="python -m genreg_core.runs.grid", description=main.__doc__)
    parser.add_argument("grid_json")
    parser.add_argument("--engine", choices=list(ENGINES), default="local")
    parser.add_argument("--address", default=None)
    parser.add_argument("--resources-per-run", default="cpu=1,gpu=0")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES)
    args = parser.parse_args(argv)
    store = RunStore()
    grid = grid_from_json(Path(args.grid_json).read_text())
    engine = make_engine(args.engine, store, parse_resources(args.resources_per_run), args.address)
    result = run_grid(store, grid, engine, args.retries, lambda p: print(p.line(), file=sys.stderr, flush=True))
    return 1 if result.progress.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

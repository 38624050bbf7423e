"""The same 8-cell grid serial vs ``--engine local`` vs ``--engine ray`` on this machine, and Ray's per-task overhead.

    python -m bench.bench_grid [--epochs 3] [--out bench/results/grid.json]

Serial is one process running the cells one after another (``execute_run`` in a loop, as the old reproduction
script did); local and ray are ``genreg_core.runs.grid.run_grid`` with one core per run. Each mode gets a fresh
GENREG_HOME, so nothing is skipped. Ratios are measured in one run; on a machine shared with other jobs they
mean little (docs/grids.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from genreg_core.config import TrainConfig
from genreg_core.runs.engines import REPO_ROOT, LocalEngine, RayEngine, Resources
from genreg_core.runs.grid import GridSpec, cell_key, cell_spec, expand_cells, run_grid
from genreg_core.runs.store import RunStore
from genreg_core.runs.worker import execute_run


def eight_cells(epochs: int) -> GridSpec:
    return GridSpec(methods=("ce", "adarand"), per_class=(5, 10), seeds=(0, 1), epochs=epochs, split_seed=0,
                    base=dataclasses.replace(TrainConfig.tiny(), epochs=epochs), device="cpu")


def serial(home: Path, grid: GridSpec) -> float:
    import torch

    torch.set_num_threads(1)
    store, start = RunStore(home), time.perf_counter()
    for cell in expand_cells(grid):
        spec = cell_spec(grid, cell)
        execute_run(store, store.create_run(spec, tags={"genreg.cell": cell_key(spec)}), max_concurrent=None)
    return time.perf_counter() - start


def on_engine(home: Path, grid: GridSpec, engine: str) -> float:
    store, start = RunStore(home), time.perf_counter()
    made = LocalEngine(store, Resources(1)) if engine == "local" else RayEngine(store, Resources(1))
    result = run_grid(store, grid, made, poll_seconds=0.2)
    assert result.progress.done == len(result.cells), result.progress
    return time.perf_counter() - start


def ray_task_overhead(n: int = 200) -> float:
    """Seconds per empty task, submitted and gathered in one batch, after a warm-up."""
    import ray

    noop = ray.remote(lambda: None)
    ray.get([noop.remote() for _ in range(8)])
    start = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    return (time.perf_counter() - start) / n


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="bench/results/grid.json")
    args = parser.parse_args()
    grid = eight_cells(args.epochs)
    assert len(expand_cells(grid)) == 8
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GENREG_HOME"] = str(Path(tmp) / "cache")
        seconds["serial"] = serial(Path(tmp) / "serial", grid)
        seconds["local"] = on_engine(Path(tmp) / "local", grid, "local")
        seconds["ray"] = on_engine(Path(tmp) / "ray", grid, "ray")
    overhead = ray_task_overhead()
    ray.shutdown()
    payload = {"cells": 8, "cores": os.cpu_count(), "epochs": args.epochs, "seconds": seconds,
               "speedup_vs_serial": {k: seconds["serial"] / v for k, v in seconds.items()},
               "ray_task_overhead_s": overhead, "load_average": os.getloadavg()}
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()

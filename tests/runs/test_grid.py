"""Grid cells, their keys, resume and retries on the local engine (Ray's tests: test_grid_ray.py)."""

import dataclasses

import pytest

from genreg_core.config import TrainConfig
from genreg_core.runs.engines import LocalEngine, Resources, make_engine, parse_resources
from genreg_core.runs.grid import (
    Cell,
    GridSpec,
    cell_key,
    cell_spec,
    expand_cells,
    format_grid_table,
    grid_table,
    run_grid,
)
from genreg_core.runs.store import RunStore


def tiny_grid(**changes) -> GridSpec:
    grid = GridSpec(methods=("ce",), per_class=(5,), seeds=(0, 1), epochs=1, split_seed=0,
                    base=TrainConfig.tiny(), device="cpu")
    return dataclasses.replace(grid, **changes)


def test_cells_cover_the_axes_and_methods_without_a_generator_run_once_per_init():
    grid = tiny_grid(methods=("gda", "ce"), per_class=(5, None), seeds=(0, 1, 2), inits=("scratch", "pretrained"),
                     regimes=("pool", "own"))
    cells = expand_cells(grid)
    expected = {Cell("gda", n, s, i, r) for n in (5, None) for s in (0, 1, 2) for i in ("scratch", "pretrained")
                for r in ("pool", "own")}
    expected |= {Cell("ce", n, s, i, "pool") for n in (5, None) for s in (0, 1, 2) for i in ("scratch", "pretrained")}
    assert set(cells) == expected and len(cells) == len(expected) == 24 + 12
    assert [c.method for c in cells[:12]] == ["ce"] * 12  # cheap methods first
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        expand_cells(tiny_grid(methods=("nope",)))
    with pytest.raises(ValueError, match="at least one of its seeds"):
        expand_cells(tiny_grid(seeds=()))


def test_a_cell_key_follows_the_config_not_the_device():
    grid = tiny_grid()
    cell = Cell("ce", 5, 0)
    spec = cell_spec(grid, cell)
    assert (spec.train.method, spec.train.per_class, spec.train.seed, spec.train.epochs) == ("ce", 5, 0, 1)
    assert spec.data.split_seed == 0  # one fixed split, whatever the seed:
    assert cell_spec(tiny_grid(split_seed=None), Cell("ce", 5, 7)).data.split_seed == 0
    assert cell_key(spec) == cell_key(dataclasses.replace(spec, device="cuda"))
    other = cell_spec(tiny_grid(overrides={"lr": 1e-2}), cell)
    assert other.train.lr == 1e-2 and cell_key(other) != cell_key(spec)
    assert cell_key(cell_spec(grid, Cell("ce", 5, 1))) != cell_key(spec)


def test_resources_parse_and_refuse():
    assert parse_resources("cpu=2,gpu=0.5") == Resources(2.0, 0.5) and parse_resources("gpu=1").cpu == 1.0
    for bad, message in (("cpu=0", "cpu must be > 0"), ("tpu=1", "takes cpu=N,gpu=G"), ("cpu=x", "not a number")):
        with pytest.raises(ValueError, match=message):
            parse_resources(bad)
    with pytest.raises(ValueError, match="--address is for --engine ray"):
        make_engine("local", RunStore(), Resources(), "127.0.0.1:6379")


def test_grid_table_mean_and_std_by_hand():
    rows = [{"init": "scratch", "regime": r, "method": m, "per_class": 5, "seed": s, "test_accuracy": a}
            for r, m, s, a in (("pool", "ce", 0, 0.5), ("pool", "ce", 1, 0.7), ("own", "gda", 0, 0.9))]
    table = grid_table(rows)
    ce = [t for t in table if t["method"] == "ce"]
    assert {t["regime"] for t in ce} == {"pool", "own"}  # ce counts under both regimes
    assert ce[0]["runs"] == 2 and ce[0]["test_accuracy_mean"] == pytest.approx(0.6)
    assert ce[0]["test_accuracy_std"] == pytest.approx(0.2 / 2**0.5)  # sample std (ddof 1): |a − b| / √2
    gda = next(t for t in table if t["method"] == "gda")
    assert gda["runs"] == 1 and gda["test_accuracy_std"] is None  # one run has no spread
    text = format_grid_table(table)
    assert "| ce | 60.0 ± 14.1 (2) |" in text and "| gda | 90.0 (1) |" in text
    assert "sample standard deviation over seeds (ddof = 1)" in text.splitlines()[0]


def test_local_grid_runs_then_a_rerun_runs_nothing(tmp_path):
    store = RunStore(tmp_path / "home")
    seen = []
    first = run_grid(store, tiny_grid(), LocalEngine(store, Resources(1)), on_progress=seen.append,
                     poll_seconds=0.3)
    assert [c.status for c in first.cells] == ["finished", "finished"] and first.ran == 2
    assert seen[0].left == 2 and (seen[-1].done, seen[-1].left, seen[-1].failed) == (2, 0, 0)
    recorded = {r.seed: r.test_accuracy for r in store.list_runs()}
    assert {c.cell.seed: c.test_accuracy for c in first.cells} == recorded
    assert all(c.seconds > 0 and c.cpu_seconds > 0 for c in first.cells)
    again = run_grid(store, tiny_grid(), LocalEngine(store, Resources(1)), poll_seconds=0.3)
    assert again.ran == 0 and all(c.skipped for c in again.cells) and len(store.list_runs()) == 2
    assert [c.test_accuracy for c in again.cells] == [c.test_accuracy for c in first.cells]
    bigger = run_grid(store, tiny_grid(seeds=(0, 1, 2)), LocalEngine(store, Resources(1)), poll_seconds=0.3)
    assert bigger.ran == 1 and [c.skipped for c in bigger.cells] == [True, True, False]

"""The Training runs page's grid launcher: the grid it launches, and its progress and table read from the store."""

import dataclasses

from streamlit.testing.v1 import AppTest

from genreg_core.config import DataConfig, TrainConfig
from genreg_core.runs.grid import GridSpec, cell_key, cell_spec, expand_cells
from genreg_core.runs.store import RunStore


def test_grid_launcher_launches_the_picked_grid_and_shows_its_progress(monkeypatch, tmp_path):
    store = RunStore(tmp_path / "store")  # a store of its own: other tests' runs share the session's
    monkeypatch.setattr("genreg_app.runs.run_store", lambda: store)
    launched = []
    monkeypatch.setattr("genreg_core.runs.grid.launch_grid", lambda s, grid, engine: launched.append((grid, engine)))
    at = AppTest.from_file("../../app_pages/training_runs.py", default_timeout=120).run()
    assert not at.exception, at.exception
    at.multiselect(key="tr.methods").set_value(["ce", "gda"])
    at.text_input(key="tr.seeds").set_value("0, 1")
    at.multiselect(key="tr.grid.per_class").set_value([5, "all"])
    at.button[1].click().run()  # the form's second submit button: Launch grid
    assert not at.exception, at.exception
    (grid, engine), = launched
    assert engine == "local" and grid.methods == ("ce", "gda") and grid.seeds == (0, 1)
    assert grid.per_class == (5, None) and len(expand_cells(grid)) == 8
    assert not store.list_runs()  # a grid records its runs itself, in its own process
    assert "grid: 0 done / 0 running / 0 failed / 8 left" in [p.proto.text for p in at.get("progress")][0]

    spec = cell_spec(grid, expand_cells(grid)[0])  # one cell finished, as the grid's process would record it
    run_id = store.create_run(spec, tags={"genreg.cell": cell_key(spec)})
    store.client.log_metric(run_id, "test_accuracy_at_best", 0.75)
    store.client.set_terminated(run_id, "FINISHED")
    at.run()
    assert not at.exception, at.exception
    assert "grid: 1 done / 0 running / 0 failed / 7 left" in [p.proto.text for p in at.get("progress")][0]
    (table,) = [d.value for d in at.dataframe if "regime" in d.value.columns]
    assert list(table["method"]) == ["ce"] and list(table["test accuracy"]) == ["75.00% (one run: no spread)"]


def test_grid_json_roundtrip_keeps_every_field():
    from genreg_core.runs.grid import grid_from_json, grid_to_json

    grid = GridSpec(methods=("mgr",), per_class=(5, None), seeds=(3,), regimes=("pool", "own"), epochs=4,
                    data=DataConfig(image_size=12), split_seed=None, overrides={"mgr.weight": 0.5},
                    base=dataclasses.replace(TrainConfig.tiny(), lr=0.01), device="cpu")
    assert grid_from_json(grid_to_json(grid)) == grid

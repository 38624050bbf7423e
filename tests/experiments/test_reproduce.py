"""experiments.reproduce is a thin caller of run_grid: its rows are the store's runs, and a rerun runs nothing."""

import json
from pathlib import Path

import pytest

from experiments.reproduce import main
from genreg_core.analysis.claims import README_END, README_START
from genreg_core.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]


def test_reproduce_records_the_grid_cells_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\nSTALE-BLOCK\n{README_END}\n")
    claims = json.loads((ROOT / "genreg_core/analysis/claims.json").read_text())
    claims["datasets"]["fashion-mnist"] = claims["datasets"]["digits"]  # a second dataset's verdicts, kept
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    results = tmp_path / "out" / "grid.jsonl"
    argv = ["--preset", "tiny", "--methods", "ce", "--inits", "scratch", "--regimes", "pool", "--settings",
            "2", "--seeds", "0", "1", "--epochs", "1", "--results", str(results), "--claims-json",
            str(tmp_path / "claims.json"), "--readme", str(readme)]
    main(argv)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted((r["method"], r["seed"]) for r in rows) == [("ce", 0), ("ce", 1)]
    store = RunStore(tmp_path / "home")
    for row in rows:  # each row is its run of the store: same accuracy, same labels, one fixed split
        metrics = store.get_run(row["run_id"]).data.metrics
        assert row["test_accuracy"] == pytest.approx(metrics["test_accuracy_at_best"])
        assert row["n_ce_labels"] == 20 and row["n_meta_labels"] == 0 and row["split_seed"] == 0
        assert row["dataset"] == "digits" and row["epochs"] == 1 and row["best_epoch"] == 1
    runs = len(store.list_runs())
    main(argv)  # a finished grid: nothing runs again, nothing is appended
    assert len(store.list_runs()) == runs and len(results.read_text().splitlines()) == 2
    assert (tmp_path / "out" / "reproduce.md").read_text().count("| ce |") == 1
    text = readme.read_text()
    assert "STALE-BLOCK" not in text and "On **digits**" in text and "On **fashion-mnist**" in text

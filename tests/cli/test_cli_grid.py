"""``genreg grid``: its JSON contract on the local engine, and fast one-line errors for unreachable services."""

import json
import sys
import time

import pytest

from genreg_core.cli.main import main

TINY = ["grid", "--methods", "ce", "--per-class", "5", "--seeds", "0", "--epochs", "1", "--preset", "tiny",
        "--split-seed", "0", "--device", "cpu"]


def test_grid_json_contract_and_resume(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    assert main([*TINY, "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert set(payload) == {"grid_id", "store", "engine", "progress", "ran", "cells", "table", "claims", "skipped"}
    assert payload["progress"] == {"done": 1, "running": 0, "failed": 0, "left": 0} and payload["ran"] == 1
    cell = payload["cells"][0]
    assert (cell["method"], cell["per_class"], cell["seed"], cell["status"]) == ("ce", 5, 0, "finished")
    assert payload["table"][0]["test_accuracy_mean"] == cell["test_accuracy"]
    assert payload["table"][0]["test_accuracy_std"] is None  # one run has no sample std (JSON null, never NaN)
    assert "grid: 1 done / 0 running / 0 failed / 0 left" in captured.err
    assert main(["runs", "list", "--json"]) == 0
    assert [r["test_accuracy"] for r in json.loads(capsys.readouterr().out)] == [cell["test_accuracy"]]
    assert main([*TINY, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ran"] == 0 and again["cells"][0]["skipped"] and again["grid_id"] == payload["grid_id"]


@pytest.mark.parametrize("flags, message", [
    (["--engine", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--engine", "ray", "--address", "nowhere"], "is not HOST:PORT, ray://HOST:PORT, auto or local"),
    (["--tracking-uri", "http://127.0.0.1:1"], "the MLflow tracking server at http://127.0.0.1:1 cannot be reached"),
    (["--tracking-uri", "ftp://x"], "neither sqlite:///PATH nor http(s)://HOST[:PORT]"),
    (["--resources-per-run", "cpu=0"], "cpu must be > 0"),
])
def test_unreachable_services_give_one_line_and_exit_2_fast(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start = time.perf_counter()
    assert main([*TINY, *flags]) == 2
    assert time.perf_counter() - start < 20
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_ray_engine_without_ray_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main([*TINY, "--engine", "ray"]) == 2
    assert "pip install 'genreg[ray]'" in capsys.readouterr().err

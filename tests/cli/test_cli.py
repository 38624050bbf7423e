import numpy as np
import pytest

from genreg_core.cli.main import main


def test_sample_writes_images_and_labels(tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", "--per-class", "2", "--seed", "0", "--sampler-steps", "2", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["images"].shape == (20, 1, 16, 16) and data["images"].dtype == np.float32
    assert data["images"].min() >= -1 and data["images"].max() <= 1
    assert data["labels"].dtype == np.int64 and np.bincount(data["labels"]).tolist() == [2] * 10


def test_reconstruct_writes_the_contract(tmp_path):
    out = tmp_path / "r.npz"
    args = ["reconstruct", "--t", "0", "500", "1000", "--n", "4", "--seed", "1", "--sampler-steps", "2",
            "--out", str(out)]
    assert main(args) == 0
    data = np.load(out)
    assert data["originals"].shape == (4, 1, 16, 16)
    assert data["labels"].shape == (4,) and data["labels"].dtype == np.int64
    assert data["t"].tolist() == [0, 500, 1000]
    assert data["reconstructions"].shape == (3, 4, 1, 16, 16)
    np.testing.assert_array_equal(data["reconstructions"][0], data["originals"])


@pytest.mark.parametrize("args, message", [
    (["reconstruct", "--t", "2000", "--n", "2", "--out", "x.npz"], "--t values must lie"),
    (["reconstruct", "--t", "10", "--n", "0", "--out", "x.npz"], "argument --n: must lie in [1,"),
    (["reconstruct", "--t", "10", "--n", "5000", "--out", "x.npz"], "--n must lie in [1, 1077]"),
    (["sample", "--per-class", "0", "--out", "x.npz"], "argument --per-class: must lie in [1,"),
    (["sample", "--per-class", "1", "--generator", "/nonexistent/model", "--out", "x.npz"], "does not exist"),
    (["sample", "--per-class", "1", "--device", "tpu", "--out", "x.npz"], "unknown device"),
])
def test_bad_arguments_give_clear_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_train_features_cli(tmp_path):
    out = tmp_path / "fx"
    assert main(["train-features", "--preset", "tiny", "--epochs", "1", "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()


METRIC_KEYS = {"precision", "recall", "density", "coverage", "frechet_distance"}


def test_features_json_contract(capsys):
    import json

    assert main(["features", "--source", "reconstruct", "--t", "300", "--n", "6", "--k", "3", "--sampler-steps", "3",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == METRIC_KEYS | {"k", "n_real", "n_synthetic", "per_class", "embedding", "reference",
                                          "skipped", "n_uncovered", "uncovered"}
    assert (payload["embedding"], payload["reference"]) == ("classifier", "same") and payload["skipped"] == []
    assert [row["class"] for row in payload["uncovered"]] == list(range(10))
    assert sum(row["uncovered"] for row in payload["uncovered"]) == payload["n_uncovered"]
    assert payload["n_real"] * (1 - payload["recall"]) == __import__("pytest").approx(payload["n_uncovered"])
    assert payload["n_real"] == payload["n_synthetic"] == 60 and payload["k"] == 3
    assert [row["class"] for row in payload["per_class"]] == list(range(10))
    assert all(METRIC_KEYS <= set(row) for row in payload["per_class"])
    assert main(["features", "--source", "reconstruct", "--n", "6"]) == 2
    assert "--source reconstruct needs --t" in capsys.readouterr().err


def test_features_on_fashion_mnist_uses_its_shipped_models(capsys):
    import json

    assert main(["features", "--dataset", "fashion-mnist", "--source", "generate", "--n", "3", "--k", "2",
                 "--sampler-steps", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_real"] == payload["n_synthetic"] == 30
    assert [row["n_real"] for row in payload["uncovered"]] == [3] * 10
    assert main(["features", "--dataset", "fashion-mnist", "--generator", "shipped-early", "--source", "generate",
                 "--n", "3", "--k", "2", "--sampler-steps", "2"]) == 0
    assert "uncovered" in capsys.readouterr().out


def test_sweep_json_contract(capsys):
    import json

    assert main(["sweep", "--t", "0", "1000", "--n", "20", "--k", "2", "--sampler-steps", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = METRIC_KEYS | {"t", "mse", "feature_distance", "centroid_distance", "label_agreement",
                          "n_uncovered", "uncovered", "uncovered_share"}
    assert [row["t"] for row in rows] == [0, 1000] and all(set(row) == keys | {"embedding", "reference",
                                                                                       "source", "seed"}
                                                              for row in rows)
    for row in rows:  # per class: 2 real images each (20 over 10 classes), their uncovered count and share
        assert len(row["uncovered"]) == 10 and sum(row["uncovered"]) == row["n_uncovered"]
        assert row["uncovered_share"] == [u / 2 for u in row["uncovered"]]
    assert rows[0]["n_uncovered"] == 0
    assert {(row["embedding"], row["reference"]) for row in rows} == {("classifier", "same")}
    assert rows[0]["mse"] == 0 and rows[1]["mse"] > 0
    assert main(["sweep", "--t", "0", "-5", "--n", "20", "--json"]) == 2
    assert "argument --t: must lie in [0," in capsys.readouterr().err
    assert main(["sweep", "--t", "0", "5000", "--n", "20", "--json"]) == 2
    assert "outside [0, 1000]" in capsys.readouterr().err


@pytest.mark.parametrize("generator", [None, "shipped-early"])
def test_train_on_fashion_mnist_passes_the_pre_flight_check(generator, capsys, monkeypatch, tmp_path):
    """The check loads Fashion-MNIST's own generator (it once loaded the digits one and refused every run)."""
    import json

    from genreg_core.runs.store import RunStore

    monkeypatch.setenv("GENREG_HOME", str(tmp_path))
    args = ["train", "--method", "ce", "--dataset", "fashion-mnist", "--preset", "tiny", "--epochs", "1",
            "--per-class", "2", "--json"] + (["--generator", generator] if generator else [])
    assert main(args) == 0, capsys.readouterr().err
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["epochs"] == 1 and 0 <= payload["test_accuracy"] <= 1
    spec = RunStore().load_spec(payload["run_id"])
    assert (spec.data.name, spec.data.image_size, spec.generator) == ("fashion-mnist", 28, generator)

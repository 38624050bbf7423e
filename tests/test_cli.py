import numpy as np
import pytest

from genreg_core.cli import main


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
    (["reconstruct", "--t", "10", "--n", "0", "--out", "x.npz"], "--n must lie"),
    (["sample", "--per-class", "0", "--out", "x.npz"], "--per-class must be at least 1"),
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

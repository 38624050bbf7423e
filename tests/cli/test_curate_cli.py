import json

from genreg_core.cli.main import main
from genreg_core.data.datasets import load_image_folder


def test_curate_writes_a_folder_that_loads_back(tmp_path, capsys):
    out = tmp_path / "curated"
    assert main(["curate", "--source", "reconstruct", "--t", "400", "--n", "6", "--k", "3", "--sampler-steps", "3",
                 "--keep", "inside", "--classes", "1", "2", "--seed", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert summary["n_kept"] == manifest["n_kept"] == len(list(out.glob("*/*.png")))
    assert summary["n_candidates"] == 60 and set(manifest["counts"]) <= {"1", "2"}
    for name, count in manifest["counts"].items():
        assert len(list((out / name).glob("*.png"))) == count
    assert all(entry["in_real_manifold"] for entry in manifest["images"])
    assert (manifest["source"], manifest["t"], manifest["seed"], manifest["sampler"]["n_steps"]) == (
        "reconstruct", 400, 3, 3)
    assert len(manifest["generator"]["sha256"]) == 64 and manifest["filters"]["keep"] == "inside"
    assert sorted(manifest["counts"]) == ["1", "2"]  # (an image folder needs two classes)
    assert len(load_image_folder(out, 16, 1)) == manifest["n_kept"]


def test_curate_errors_are_one_line(tmp_path, capsys):
    assert main(["curate", "--source", "reconstruct", "--n", "2", "--out", str(tmp_path / "a")]) == 2
    assert "--source reconstruct needs --t" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert main(["curate", "--n", "2", "--out", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["curate", "--n", "2", "--t", "-5", "--out", str(tmp_path / "b")]) == 2
    assert "--t" in capsys.readouterr().err
    assert main(["curate", "--n", "2", "--classes", "12", "--sampler-steps", "2", "--out", str(tmp_path / "c")]) == 2
    assert "not classes of the dataset" in capsys.readouterr().err

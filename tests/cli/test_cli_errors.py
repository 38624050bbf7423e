"""Every bad value on the command line: exit code 2, one line naming the flag, and no work done."""

import argparse
import json
import shutil

import pytest
from PIL import Image

from genreg_core.cli.main import main
from genreg_core.diffusion.model import DEFAULT_GENERATOR_DIR


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Fail loudly if a command gets as far as loading data, a lab, or recording a run; run in an empty folder."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the bad value was refused")

    monkeypatch.setattr("genreg_core.lab.open_lab", refuse)
    monkeypatch.setattr("genreg_core.data.datasets.load_dataset", refuse)
    monkeypatch.setattr("genreg_core.runs.store.RunStore.create_run", refuse)
    monkeypatch.chdir(tmp_path)
    return tmp_path


BAD_VALUES = [
    (["sample", "--per-class", "1000000000", "--out", "x.npz"], "--per-class"),
    (["sample", "--per-class", "0", "--out", "x.npz"], "--per-class"),
    (["reconstruct", "--t", "10", "--n", "1000000000", "--out", "x.npz"], "--n"),
    (["features", "--n", "1000000000"], "--n"),
    (["sweep", "--n", "1000000000"], "--n"),
    (["sweep", "--t", "0", "-5"], "--t"),
    (["train", "--method", "ce", "--per-class", "1000000000"], "--per-class"),
    (["train", "--method", "ce", "--per-class", "some"], "--per-class"),
    (["sample", "--per-class", "1", "--image-size", "0", "--out", "x.npz"], "--image-size"),
    (["sample", "--per-class", "1", "--image-size", "-16", "--out", "x.npz"], "--image-size"),
    (["sample", "--per-class", "1", "--image-size", "100000", "--out", "x.npz"], "--image-size"),
    (["train-generator", "--batch-size", "0", "--out", "g"], "--batch-size"),
    (["train-generator", "--steps", "0", "--out", "g"], "--steps"),
    (["train-generator", "--steps", "-5", "--out", "g"], "--steps"),
    (["sample", "--per-class", "1", "--guidance", "inf", "--out", "x.npz"], "--guidance"),
    (["sample", "--per-class", "1", "--guidance", "-1", "--out", "x.npz"], "--guidance"),
    (["sample", "--per-class", "1", "--guidance", "nan", "--out", "x.npz"], "--guidance"),
    (["train", "--method", "ce", "--epochs", "1000000000"], "--epochs"),
    (["train", "--method", "ce", "--epochs", "0"], "--epochs"),
    (["train-features", "--epochs", "0", "--out", "f"], "--epochs"),
    (["sample", "--per-class", "1", "--split-seed", "-1", "--out", "x.npz"], "--split-seed"),
    (["sample", "--per-class", "1", "--seed", str(2**70), "--out", "x.npz"], "--seed"),
    (["train", "--method", "ce", "--seed", "-3"], "--seed"),
    (["sample", "--per-class", "1", "--sampler-steps", "0", "--out", "x.npz"], "--sampler-steps"),
    (["features", "--k", "0"], "--k"),
    (["train", "--method", "ce", "--max-concurrent", "0"], "--max-concurrent"),
    (["sample", "--per-class", "1", "--out", "missing/x.npz"], "--out"),
    (["sample", "--per-class", "1", "--out", "."], "--out"),
    (["reconstruct", "--t", "5", "--n", "2", "--out", "missing/x.npz"], "--out"),
    (["train-features", "--out", "missing/deeper/f"], "--out"),
    (["runs", "export", "--out", "runs.txt"], "--out"),
    (["runs", "export", "--out", "missing/runs.csv"], "--out"),
    (["sample", "--per-class", "1", "--dataset", "imagenet", "--out", "x.npz"], "--dataset"),
    (["sample", "--per-class", "1", "--dataset", "imagefolder", "--data-root", "bad\udcff", "--out", "x.npz"],
     "--data-root"),
    (["train", "--method", "ce", "--data-root", "bad\udcffroot"], "--data-root"),
]


@pytest.mark.parametrize("args, flag", BAD_VALUES, ids=[" ".join(a)[:60] for a, _ in BAD_VALUES])
def test_bad_values_are_refused_before_any_work(args, flag, no_work, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and flag in err[0], err
    assert list(no_work.iterdir()) == []  # nothing written


def test_out_that_is_a_file_or_folder_of_the_wrong_kind(no_work, capsys):
    (no_work / "taken").write_text("a file")
    assert main(["train-generator", "--out", "taken"]) == 2
    assert "argument --out: taken is a file" in capsys.readouterr().err
    assert main(["train-features", "--checkpoint-dir", "x", "--out", "o"]) == 2  # not a flag of train-features
    capsys.readouterr()
    assert main(["train-generator", "--checkpoint-dir", "taken", "--out", "o"]) == 2
    assert "argument --checkpoint-dir: taken is a file" in capsys.readouterr().err


def test_npz_is_written_exactly_where_asked(tmp_path):
    import numpy as np

    out = tmp_path / "samples"  # numpy alone would write samples.npz and report the wrong path
    assert main(["sample", "--per-class", "1", "--sampler-steps", "1", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape == (10, 1, 16, 16)


def _generator_copy(tmp_path, metadata):
    folder = tmp_path / "gen"
    shutil.copytree(DEFAULT_GENERATOR_DIR, folder)
    (folder / "genreg.json").write_text(metadata if isinstance(metadata, str) else json.dumps(metadata))
    return folder


@pytest.mark.parametrize("metadata, message", [
    ("[1, 2, 3]", "must hold a JSON object, got list"),
    ('"a string"', "must hold a JSON object, got str"),
    ("{not json", "is not valid JSON"),
    ({"class_names": [str(i) for i in range(10)], "null_class": 99}, "null_class 99 is out of range"),
    ({"class_names": [str(i) for i in range(10)], "null_class": -1}, "null_class -1 is out of range"),
    ({"class_names": [str(i) for i in range(10)], "null_class": "10"}, "null_class '10' is out of range"),
    ({"class_names": "0123456789", "null_class": 10}, "class_names must be a list of strings"),
    ({"class_names": ["a", "b"], "null_class": 10}, "2 class_names but the model has 10 classes"),
])
def test_bad_generator_metadata_is_a_clear_error(tmp_path, metadata, message, capsys):
    folder = _generator_copy(tmp_path, metadata)
    args = ["sample", "--per-class", "1", "--sampler-steps", "1", "--guidance", "2", "--generator", str(folder),
            "--out", str(tmp_path / "x.npz")]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("source", ["./no_such_model", "models/no_such_model", "a/b/c", "../nope", "no_such"])
def test_a_missing_relative_generator_path_is_reported_missing(tmp_path, monkeypatch, source, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert main(["sample", "--per-class", "1", "--generator", source, "--out", "x.npz"]) == 2
    err = capsys.readouterr().err
    assert f"generator {source} does not exist" in err and "huggingface" not in err.lower()


def _folder(root, classes, n, mode="L", size=8):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new(mode, (size, size), 10 * i).save(root / c / f"{i}.png")
    return root


def test_too_few_images_per_class_for_the_split(tmp_path, capsys):
    root = _folder(tmp_path / "data", "ab", 3)
    args = ["train-generator", "--dataset", "imagefolder", "--data-root", str(root), "--out", str(tmp_path / "g")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "class 0 has only 3 images" in err and "needs at least 5 images in every class" in err
    assert not (tmp_path / "g").exists()


def test_channel_mismatch_is_found_before_the_folder_is_decoded(tmp_path, monkeypatch, capsys):
    root = _folder(tmp_path / "rgb", [str(c) for c in range(10)], 5, mode="RGB")
    decoded = []
    monkeypatch.setattr("genreg_core.data.datasets._read_image", lambda *a, **k: decoded.append(a))
    args = ["features", "--dataset", "imagefolder", "--data-root", str(root), "--n", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1-channel (grayscale)" in err and "3 channel(s) (RGB)" in err and "image size" not in err
    assert decoded == []


def test_size_mismatch_hint_names_the_image_size(tmp_path, capsys):
    root = _folder(tmp_path / "gray", [str(c) for c in range(10)], 5)
    args = ["features", "--dataset", "imagefolder", "--data-root", str(root), "--image-size", "32", "--n", "2"]
    assert main(args) == 2
    assert "set the image size to 16" in capsys.readouterr().err


def test_an_image_folder_too_large_for_memory_is_refused(tmp_path, monkeypatch):
    from genreg_core.data.datasets import load_image_folder

    root = _folder(tmp_path / "data", "ab", 5)
    monkeypatch.setattr("genreg_core.data.datasets.MAX_DATASET_BYTES", 10 * 16 * 16 * 4 - 1)
    with pytest.raises(ValueError, match="more than the 0 MB limit"):
        load_image_folder(root, 16)
    assert len(load_image_folder(root, 8)) == 10


def _numeric_flags():
    """(command, flag) of every flag parsed as a number, found in the parser itself."""
    from genreg_core.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if action.option_strings and getattr(action.type, "__name__", "") == "parse":
                found.append((command, action.option_strings[0]))
    return found


REQUIRED = {"sample": ["--per-class", "1", "--out", "x.npz"], "reconstruct": ["--t", "5", "--n", "2", "--out", "x.npz"],
            "train-generator": ["--out", "g"], "train-features": ["--out", "f"], "train": ["--method", "ce"],
            "pretrain-backbone": ["--out", "b"]}


@pytest.mark.parametrize("value", ["nan", "inf", "-1", str(2**64)])
def test_every_numeric_flag_refuses_nan_inf_negative_and_huge(value, no_work, capsys):
    flags = _numeric_flags()
    assert len(flags) > 30 and ("pretrain-backbone", "--epochs") in flags
    for command, flag in flags:
        base = list(REQUIRED.get(command, []))
        if flag in base:  # replace the required value by the bad one
            base[base.index(flag) + 1] = value
            args = [command] + base
        else:
            args = [command] + base + [flag, value]
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0], (args, err)
    assert list(no_work.iterdir()) == []


@pytest.mark.parametrize("out, message", [("/dev/full", "is not a regular file"), ("/proc/x.npz", "cannot write in"),
                                          (".", "is a folder")])
def test_out_that_cannot_take_the_file_is_refused_before_work(out, message, no_work, capsys):
    assert main(["sample", "--per-class", "1", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and message in err[0]


@pytest.mark.parametrize("kind", ["nan weights", "nan betas", "T = 0", "T = 1e12", "half the tensors", "no weights"])
def test_a_broken_generator_is_one_line_and_writes_nothing(tmp_path, kind, capfd):
    from tests.hostile_files import broken_generator

    folder = broken_generator(tmp_path, kind)
    assert main(["sample", "--per-class", "1", "--sampler-steps", "1", "--generator", str(folder),
                 "--out", str(tmp_path / "x.npz")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genreg: error: cannot load generator from"), err
    assert not (tmp_path / "x.npz").exists()


def test_train_checks_the_generator_before_recording_a_run(tmp_path, monkeypatch, capfd):
    from tests.hostile_files import broken_generator

    monkeypatch.setattr("genreg_core.runs.store.RunStore.create_run",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("a run was recorded")))
    folder = broken_generator(tmp_path, "nan weights")
    assert main(["train", "--method", "gda", "--preset", "tiny", "--generator", str(folder)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0] and "%" not in err[0], err  # no progress bar either

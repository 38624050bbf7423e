"""Several processes for one job (HF Accelerate): the plain path without a launcher, the same numbers through an
Accelerator in one process, gathered evaluation, and (marked slow) a real two-process CPU run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genreg_core.cli.main import main
from genreg_core.config import FeatureConfig, GeneratorTrainConfig, TrainConfig, get_preset
from genreg_core.diffusion.training import train_generator
from genreg_core.distributed import ACCELERATE_MISSING, Parallel, parallel_context
from genreg_core.features.extractor import build_convnet
from genreg_core.training.loop import evaluate, train_classifier

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_process(monkeypatch):
    """An Accelerator in this (single) process; Accelerate's shared state is reset afterwards."""
    from accelerate.state import AcceleratorState

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parallel = parallel_context("cpu", force=True)
    assert parallel.accelerator is not None and parallel.num_processes == 1 and parallel.is_main
    yield parallel
    AcceleratorState._reset_state(reset_partial_state=True)


def _history(result) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]


def test_without_a_launcher_it_is_the_plain_path(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parallel = parallel_context("cpu")
    x = torch.arange(5)
    assert parallel.accelerator is None and not parallel.distributed and parallel.is_main
    assert parallel.shard(x) is x and parallel.sample_mean(0.25, 7) == 0.25 and parallel.any(True)


def test_a_launch_without_accelerate_gets_one_clear_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'genreg\[accelerate\]'") as info:
        parallel_context("cpu")
    assert str(info.value) == ACCELERATE_MISSING and "\n" not in ACCELERATE_MISSING


def test_the_own_regime_is_refused_under_a_launcher(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["train", "--method", "gda", "--preset", "tiny", "--per-class", "5", "--epochs", "1",
                 "--generator-regime", "own", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "accelerate launch" in err and len(err.splitlines()) == 1


def test_one_process_through_accelerate_trains_the_same_classifier(digits, digits_split, one_process):
    config = replace(TrainConfig.tiny(), epochs=2, batch_size=7)  # 50 images: a last batch of 1
    plain = train_classifier(digits, digits_split, config)
    accelerated = train_classifier(digits, digits_split, config, parallel=one_process)
    assert _history(accelerated) == _history(plain)
    assert accelerated.test_accuracy == plain.test_accuracy
    for name, value in plain.state_dict.items():
        assert torch.equal(accelerated.state_dict[name], value), name


def test_one_process_through_accelerate_trains_the_same_generator(digits, tmp_path, one_process):
    preset, losses = get_preset("tiny"), {"plain": [], "accelerate": []}
    config = GeneratorTrainConfig(steps=3, batch_size=8, warmup_steps=1, checkpoint_every=100)
    plain = train_generator(digits.images[:32], digits.labels[:32], preset.unet, config, tmp_path / "plain",
                            on_step=lambda s, m: losses["plain"].append(m["loss"]))
    accelerated = train_generator(digits.images[:32], digits.labels[:32], preset.unet, config, tmp_path / "acc",
                                  on_step=lambda s, m: losses["accelerate"].append(m["loss"]), parallel=one_process)
    assert losses["accelerate"] == losses["plain"] and len(losses["plain"]) == 3
    for (name, a), b in zip(plain.unet.state_dict().items(), accelerated.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (tmp_path / "acc").is_dir()


def test_generator_batch_must_divide_into_the_processes(digits, tmp_path):
    class TwoProcesses(Parallel):
        num_processes = 2

    config = GeneratorTrainConfig(steps=1, batch_size=7)
    with pytest.raises(ValueError, match="does not divide into 2 processes"):
        train_generator(digits.images[:8], digits.labels[:8], get_preset("tiny").unet, config, tmp_path / "g",
                        parallel=TwoProcesses())


def test_gathered_evaluation_equals_the_plain_one(digits, one_process):
    torch.manual_seed(0)
    model = build_convnet(FeatureConfig(width=8, feature_dim=32), digits.channels, digits.n_classes)
    x, y = digits.images[:37], digits.labels[:37]  # batches of 8: a short last one
    assert evaluate(model, x, y, batch_size=8, parallel=one_process) == evaluate(model, x, y, batch_size=8)


@pytest.mark.slow
def test_two_cpu_processes_share_one_model_and_gather_the_whole_evaluation(digits, digits_split, tmp_path):
    """``accelerate launch`` with two CPU processes (gloo): both end with the same weights (the gradients are averaged,
    BatchNorm's buffers broadcast), and the gathered evaluation equals this process's plain one on those weights.
    About 25 s on a loaded 2-core machine (two process starts), hence slow."""
    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GENREG_HOME": str(tmp_path / "home")}
    env.pop("WORLD_SIZE", None)
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
               "no", "--dynamo_backend", "no", str(REPO / "tests" / "distributed_job.py"), str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    assert ranks[0]["classifier"] == ranks[1]["classifier"] and ranks[0]["generator"] == ranks[1]["generator"]
    assert ranks[0]["odd_eval"] == ranks[1]["odd_eval"]
    assert [(r["val_loss"], r["val_accuracy"]) for r in ranks[0]["history"]] == \
        [(r["val_loss"], r["val_accuracy"]) for r in ranks[1]["history"]]
    assert (tmp_path / "generator").is_dir()
    config = TrainConfig.tiny()
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), digits.channels,
                          digits.n_classes)
    model.load_state_dict(load_file(tmp_path / "classifier.safetensors"))
    val_loss, val_accuracy = evaluate(model, digits.images[digits_split.val], digits.labels[digits_split.val])
    last = ranks[0]["history"][-1]
    assert last["val_accuracy"] == val_accuracy and last["val_loss"] == pytest.approx(val_loss, rel=1e-6)
    odd_loss, odd_accuracy = evaluate(model, digits.images[:37], digits.labels[:37], batch_size=8)
    assert ranks[0]["odd_eval"][1] == odd_accuracy and ranks[0]["odd_eval"][0] == pytest.approx(odd_loss, rel=1e-6)

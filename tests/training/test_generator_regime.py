"""The generator regimes: an ``own`` generator reads only the run's N-per-class images and is cached by its key."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genreg_core.config import DataConfig, TrainConfig
from genreg_core.data.datasets import ImageDataset, per_class_subset
from genreg_core.training.generator_regime import check_regime, get_own_generator, own_generator_dir


def _poisoned(digits, keep) -> ImageDataset:
    """The digits with every image outside ``keep`` replaced by NaN: reading one makes the training loss NaN."""
    images = torch.full_like(digits.images, float("nan"))
    images[keep] = digits.images[keep]
    return dataclasses.replace(digits, images=images)


def test_own_generator_never_touches_images_outside_the_subset(digits, digits_split, tmp_path, monkeypatch):
    config = dataclasses.replace(TrainConfig.tiny("gda"), generator_regime="own")
    subset = per_class_subset(digits.labels, digits_split.train, config.per_class, config.seed)
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "poisoned"))
    steps = []
    poisoned = get_own_generator(_poisoned(digits, subset), digits_split, DataConfig(), config,
                                 on_step=lambda step, total, m: steps.append((step, total, m["loss"])))
    assert [s for s, _, _ in steps] == [1, 2, 3, 4] and all(t == 4 for _, t, _ in steps)
    assert all(torch.isfinite(torch.tensor(loss)) for _, _, loss in steps)  # train_generator raises on NaN anyway
    assert poisoned.metadata["train_rows"] == subset.tolist() and poisoned.metadata["n_train_images"] == 50
    monkeypatch.setenv("GENREG_HOME", str(tmp_path / "clean"))
    clean = get_own_generator(digits, digits_split, DataConfig(), config)
    for (name, a), b in zip(clean.unet.state_dict().items(), poisoned.unet.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)  # what lies outside the subset changes nothing


def test_own_generator_is_cached_by_data_n_and_seed(digits, digits_split, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREG_HOME", str(tmp_path))
    config = dataclasses.replace(TrainConfig.tiny("gda"), generator_regime="own")
    first = get_own_generator(digits, digits_split, DataConfig(), config)
    steps = []
    again = get_own_generator(digits, digits_split, DataConfig(), config, on_step=lambda *a: steps.append(a))
    assert steps == [] and again.metadata["key"] == first.metadata["key"]  # loaded, not retrained
    assert own_generator_dir(first.metadata["key"]).is_dir()
    other_seed = get_own_generator(digits, digits_split, DataConfig(), dataclasses.replace(config, seed=1))
    other_n = get_own_generator(digits, digits_split, DataConfig(), dataclasses.replace(config, per_class=4))
    assert len({first.metadata["key"], other_seed.metadata["key"], other_n.metadata["key"]}) == 3


def test_unknown_regime_is_rejected():
    with pytest.raises(ValueError, match="unknown generator regime"):
        check_regime("everything")


def test_every_run_records_its_regime(tmp_path):
    from genreg_core.runs.store import RunSpec, RunStore

    store = RunStore(tmp_path)
    run_id = store.create_run(RunSpec(dataclasses.replace(TrainConfig.tiny("gda"), generator_regime="own"),
                                      DataConfig()))
    run = store.get_run(run_id)
    assert run.data.params["train.generator_regime"] == "own" and run.data.tags["genreg.generator_regime"] == "own"
    summary = store.summary(run_id)
    assert summary.generator_regime == "own" and summary.name.endswith("-own")


def test_cli_rejects_an_unknown_regime_naming_the_flag(capsys):
    from genreg_core.cli.main import main

    assert main(["train", "--method", "gda", "--generator-regime", "everything"]) == 2
    assert "--generator-regime" in capsys.readouterr().err


def test_run_summary_keeps_regimes_apart():
    from genreg_core.runs.store import RunSummary, summarize_runs

    def run(seed, regime, acc):
        return RunSummary(f"r{seed}{regime}", "n", "finished", "gda", "5", seed, 3, 3, 0.5, acc, 0.0, None, None,
                          generator_regime=regime)

    rows = summarize_runs([run(0, "pool", 0.9), run(1, "pool", 0.8), run(0, "own", 0.6)])
    by_regime = {r["generator_regime"]: r for r in rows}
    assert by_regime["pool"]["runs"] == 2 and by_regime["own"]["test_accuracy_mean"] == pytest.approx(0.6)


def test_worker_trains_the_own_generator_first_and_shows_its_progress(tmp_path):
    from genreg_core.runs.store import RunSpec, RunStore
    from genreg_core.runs.worker import execute_run

    store = RunStore(tmp_path)
    config = dataclasses.replace(TrainConfig.tiny("gda"), generator_regime="own", epochs=1, seed=3)
    seen = []
    run_id = store.create_run(RunSpec(config, DataConfig(), None, "cpu"))
    result = execute_run(store, run_id, on_generator_step=lambda step, total, m: seen.append((step, total)))
    assert result is not None and result.status == "finished"
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    run = store.get_run(run_id)
    assert run.data.tags["genreg.generator_progress"] == "trained" and run.data.tags["genreg.own_generator"]
    assert [step for step, _ in store.history(run_id, ("generator/loss",))["generator/loss"]] == [1, 2, 3, 4]
    again = store.create_run(RunSpec(config, DataConfig(), None, "cpu"))
    execute_run(store, again)
    assert store.summary(again).generator_progress == "cached"

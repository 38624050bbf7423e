import dataclasses

import numpy as np
import pytest
import torch

from genreg_core.analysis.curation import Candidates, export_folder
from genreg_core.config import TrainConfig, override
from genreg_core.training.loop import train_classifier
from genreg_core.training.methods import make_method
from genreg_core.training.methods.base import MethodSetup
from genreg_core.training.methods.gda import load_pool_folder

NAMES = [str(i) for i in range(10)]


def _export(tmp_path, labels):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(-1, 1, (len(labels), 1, 16, 16)).astype(np.float32))
    candidates = Candidates(images, np.asarray(labels), np.ones(len(labels), bool), np.zeros(len(labels)),
                            np.zeros(len(labels), np.int64))
    record = {"source": "generate", "dataset": {"class_names": NAMES}}
    export_folder(tmp_path / "pool", candidates, np.ones(len(labels), bool), record, NAMES)
    return images, np.asarray(labels)


def test_gda_reads_its_pool_from_a_curated_export(tmp_path):
    images, labels = _export(tmp_path, [3, 7, 7, 3, 9])
    gda = make_method("gda", override(TrainConfig.tiny("gda"), "gda.pool_folder", str(tmp_path / "pool")))
    setup = MethodSetup(model=None, images=torch.zeros(2, 1, 16, 16), labels=torch.zeros(2), n_classes=10,
                        device=torch.device("cpu"), rng=torch.Generator().manual_seed(0))
    gda.start(setup)  # no generator needed
    # the loader sorts by class folder, then by file name (the sample's index)
    order = sorted(range(5), key=lambda i: (str(labels[i]), i))
    assert gda.pool_labels_.tolist() == labels[order].tolist()
    assert (gda.pool_images_ - images[order]).abs().max() <= 1 / 127.5 + 1e-6


def test_gda_pool_folder_errors(tmp_path):
    (tmp_path / "a" / "0").mkdir(parents=True)
    with pytest.raises(ValueError, match="manifest.json"):
        load_pool_folder(str(tmp_path / "a"), 1, 16, 10)
    _export(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="curated for 10 classes"):
        load_pool_folder(str(tmp_path / "pool"), 1, 16, 3)


def test_a_run_trains_on_a_curated_pool(tmp_path, digits, digits_split, tiny_generator):
    _export(tmp_path, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2)
    config = override(dataclasses.replace(TrainConfig.tiny("gda"), epochs=1), "gda.pool_folder", str(tmp_path / "pool"))
    result = train_classifier(digits, digits_split, config, generator=tiny_generator)
    assert np.isfinite(result.history[-1]["train_loss"]) and np.isfinite(result.history[-1]["ce_synthetic"])

"""Shared fixtures: tiny models, the digits dataset, an isolated GENREG_HOME."""

from __future__ import annotations

import pytest
import torch

from genreg_core.config import GeneratorTrainConfig, get_preset
from genreg_core.data.datasets import load_digits_dataset, split_dataset
from genreg_core.diffusion.model import Generator, build_scheduler, build_unet


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Caches, uploads and runs of the tests go to a temporary GENREG_HOME."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENREG_HOME", str(tmp_path_factory.mktemp("genreg_home")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset(16)


@pytest.fixture(scope="session")
def digits_split(digits):
    return split_dataset(digits.labels, seed=0)


@pytest.fixture(scope="session")
def tiny_generator() -> Generator:
    """An untrained tiny class-conditional UNet with the real DDPM schedule (fast, deterministic)."""
    torch.manual_seed(0)
    preset = get_preset("tiny")
    unet = build_unet(preset.unet).eval().requires_grad_(False)
    return Generator(unet, build_scheduler(GeneratorTrainConfig()), [str(i) for i in range(10)], 10, {}, "tiny")

"""A broken generator is refused at load, with a message naming what is wrong, before it can write anything."""

import subprocess
import sys

import pytest
import torch

from genreg_core.diffusion.model import load_generator
from genreg_core.diffusion.sampling import sample_images
from tests.hostile_files import broken_generator

CASES = [
    ("nan weights", "weight tensors hold NaN or infinite values"),
    ("nan betas", "beta_start must be a finite number in (0, 1), got nan"),
    ("T = 0", "num_train_timesteps must be an integer in [1, 100,000], got 0"),
    ("T = 1e12", "num_train_timesteps must be an integer in [1, 100,000], got 1000000000000.0"),
    ("T a float", "num_train_timesteps must be an integer in [1, 100,000], got 1000.5"),
    ("half the tensors", "lacks 91 of the model's 183 weights"),
    ("no weights", "has no safetensors weights"),
    ("huge UNet", "more than the limit of 500,000,000 (GENREG_MAX_GENERATOR_PARAMS); refused before allocating"),
]


@pytest.mark.parametrize("kind, message", CASES, ids=[k for k, _ in CASES])
def test_broken_generators_are_refused_at_load(tmp_path, kind, message, capfd):
    folder = broken_generator(tmp_path, kind)
    with pytest.raises(ValueError, match="cannot load generator from") as info:
        load_generator(folder)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "TRAIN this model" not in capfd.readouterr().err  # diffusers never initialised weights at random


def test_a_generator_whose_samples_are_not_finite_is_stopped(tiny_generator):
    class NaNUNet(torch.nn.Module):  # every prediction NaN (a load-time probe would refuse a real one)
        config = tiny_generator.unet.config

        def forward(self, x, t, class_labels=None):
            return type("Out", (), {"sample": torch.full_like(x, float("nan"))})()

    gen = type(tiny_generator)(NaNUNet(), tiny_generator.scheduler, tiny_generator.class_names, 10, {}, "nan-unet")
    gen.unet.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))
    with pytest.raises(ValueError, match="produced 2 of 2 images with NaN or infinite values; nothing was written"):
        sample_images(gen, torch.tensor([0, 1]), sampler=None, batch_size=2)


def test_a_huge_unet_config_is_refused_without_allocating(tmp_path):
    """The process's peak memory stays far below the 540 GB the config asks for (and below 2 GB)."""
    folder = broken_generator(tmp_path, "huge UNet")
    code = ("import resource, sys\nfrom genreg_core.cli.main import main\n"
            f"code = main(['sample', '--per-class', '1', '--generator', {str(folder)!r}, '--out', "
            f"{str(tmp_path / 'x.npz')!r}])\n"
            "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    code, peak_kb = map(int, done.stdout.split())
    assert code == 2 and "refused before allocating" in done.stderr
    assert peak_kb < 2 * 2**20, f"peak memory {peak_kb / 2**20:.2f} GB"
    assert not (tmp_path / "x.npz").exists()

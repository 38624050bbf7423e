"""Hostile files built on the fly: other image formats behind PNG/JPEG names and broken copies of the shipped model.

Used by the data, upload, model and CLI tests and by ``faults/hostile.py``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from PIL import Image

from genreg_core.diffusion.model import DEFAULT_GENERATOR_DIR

FOREIGN_FORMATS = ("EPS", "TIFF", "PDF")  # EPS would run Ghostscript, were Pillow allowed to try it
BROKEN_GENERATORS = ("nan weights", "nan betas", "T = 0", "T = 1e12", "T a float", "half the tensors",
                     "no weights", "huge UNet")


def foreign_image(fmt: str) -> bytes:
    """An 8×8 image saved as ``fmt`` (EPS, TIFF, PDF...): bytes a PNG or JPEG name may hide."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def _edit_json(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _edit_weights(path: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file(edit(tensors), path)


def broken_generator(root: Path, kind: str) -> Path:
    """A copy of the shipped model under ``root`` broken as ``kind`` (one of ``BROKEN_GENERATORS``)."""
    folder = root / kind.replace(" ", "_").replace("=", "").replace(".", "")
    shutil.copytree(DEFAULT_GENERATOR_DIR, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    scheduler = folder / "scheduler" / "scheduler_config.json"
    if kind == "nan weights":
        _edit_weights(weights, lambda t: {k: v.clone().fill_(float("nan")) for k, v in t.items()})
    elif kind == "nan betas":
        scheduler.write_text(scheduler.read_text().replace('"beta_start": 0.0001', '"beta_start": NaN'))
    elif kind == "T = 0":
        _edit_json(scheduler, num_train_timesteps=0)
    elif kind == "T = 1e12":
        _edit_json(scheduler, num_train_timesteps=1e12)
    elif kind == "T a float":
        _edit_json(scheduler, num_train_timesteps=1000.5)
    elif kind == "half the tensors":
        _edit_weights(weights, lambda t: dict(list(sorted(t.items()))[::2]))
    elif kind == "no weights":
        weights.unlink()
    elif kind == "huge UNet":  # about 60 billion parameters: 240 GB in fp32
        _edit_json(folder / "unet" / "config.json", block_out_channels=[8192] * 4, layers_per_block=8,
                   down_block_types=["DownBlock2D"] * 4, up_block_types=["UpBlock2D"] * 4, norm_num_groups=32)
    else:
        raise ValueError(f"unknown broken generator {kind!r}")
    return folder

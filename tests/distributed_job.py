"""The job the two-process test starts under ``accelerate launch``: a tiny classifier and generator trained data-
parallel on the CPU, each process writing what it ended with to ``OUT/rank<i>.json`` (the main one also its weights)."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from genreg_core.config import FeatureConfig, GeneratorTrainConfig, TrainConfig, get_preset
from genreg_core.data.datasets import load_digits_dataset, split_dataset
from genreg_core.diffusion.training import train_generator
from genreg_core.distributed import parallel_context
from genreg_core.features.extractor import ConvNet, build_convnet
from genreg_core.training.loop import evaluate, train_classifier


def digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, value in state.items():
        h.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    parallel = parallel_context("cpu")
    digits = load_digits_dataset(16)
    split = split_dataset(digits.labels, seed=0)
    # 50 images in batches of 7: the last batch holds 1 image, so the second process's slice of it is empty
    config = replace(TrainConfig.tiny(), epochs=2, batch_size=7)
    result = train_classifier(digits, split, config, parallel=parallel)
    model: ConvNet = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim),
                                   digits.channels, digits.n_classes)
    model.load_state_dict(result.state_dict)
    odd = torch.arange(37)  # 37 images in batches of 8: Accelerate pads the last batch, gather_for_metrics trims it
    gathered = evaluate(model, digits.images[odd], digits.labels[odd], batch_size=8, parallel=parallel)
    generator = train_generator(digits.images[:32], digits.labels[:32], get_preset("tiny").unet,
                                GeneratorTrainConfig(steps=2, batch_size=8, warmup_steps=1, checkpoint_every=100),
                                out / "generator", parallel=parallel)
    rank = parallel.accelerator.process_index
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]
    (out / f"rank{rank}.json").write_text(json.dumps({
        "processes": parallel.num_processes, "history": history, "classifier": digest(result.state_dict),
        "generator": digest(generator.unet.state_dict()), "odd_eval": gathered}))
    if parallel.is_main:
        save_file({k: v.contiguous() for k, v in result.state_dict.items()}, out / "classifier.safetensors")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

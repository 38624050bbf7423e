"""The core at GPU speed, measured in one run on one card, printed as one table.

    python bench/bench_gpu.py [--device cuda] [--json OUT] [--generator-full]
    python bench/bench_gpu.py --quick --device cpu      # tiny sizes: checks the script, its numbers mean nothing

- Sampling, 25 DDIM steps, 20,000 samples of the shipped model: ``sample_images`` at batch 256 fp32 (the old
  default path), diffusers' ``DDIMScheduler.step`` loop over the same UNet at batch 256, and ``sample_images`` at
  the device's batch size in fp32, bf16 and bf16 + ``torch.compile`` (its warm-up timed apart).
- Fidelity: the outside classifier (``genreg_core.evaluation.fidelity``) on the first 1,000 samples of each sampling
  row.
- MGR, 10 images per class, 30 epochs, eager and with ``mgr_compile`` (a 1-epoch warm-up run timed apart).
- Generator training on the ``gpu`` preset (batch 1,024): steps/s in fp32 eager and bf16 + compile after a
  warm-up, and the preset's projected run time; ``--generator-full`` trains the whole preset and scores it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

from genreg_core.config import GeneratorTrainConfig, MGROptions, SamplerConfig, TrainConfig, get_preset
from genreg_core.data.datasets import load_digits_dataset, split_dataset
from genreg_core.diffusion.model import load_generator
from genreg_core.diffusion.sampling import sample_images
from genreg_core.diffusion.training import train_generator
from genreg_core.evaluation.fidelity import class_fidelity
from genreg_core.training.loop import train_classifier


@dataclass
class Sizes:
    n_samples: int = 20_000
    steps: int = 25
    n_fidelity: int = 1000
    mgr_per_class: int = 10
    mgr_epochs: int = 30
    mgr_sampler_steps: int = 10
    train_steps: int = 200  # timed generator-training steps (after the warm-up)
    train_warmup: int = 20
    preset: str = "gpu"


QUICK = Sizes(n_samples=40, steps=3, n_fidelity=40, mgr_per_class=3, mgr_epochs=1, mgr_sampler_steps=2,
              train_steps=3, train_warmup=1, preset="tiny")


def _progress(row: dict) -> dict:
    print(f"done: {row}", file=sys.stderr, flush=True)
    return row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def diffusers_loop(generator, labels: torch.Tensor, steps: int, batch_size: int, seed: int = 0) -> torch.Tensor:
    """The same samples the diffusers way: ``DDIMScheduler.step`` over the same UNet, batch by batch."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(generator.scheduler.config)
    scheduler.set_timesteps(steps)
    device, shape = generator.device, (generator.channels, generator.image_size, generator.image_size)
    rng = torch.Generator(device=device).manual_seed(seed)
    out = []
    with torch.inference_mode():
        for start in range(0, labels.shape[0], batch_size):
            y = labels[start:start + batch_size]
            x = torch.randn((y.shape[0], *shape), generator=rng, device=device)  # (B, C, H, W)
            for t in scheduler.timesteps:
                eps = generator.unet(x, t, class_labels=y).sample
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def bench_sampling(device: torch.device, sizes: Sizes, train: tuple[torch.Tensor, torch.Tensor]) -> list[dict]:
    labels = (torch.arange(sizes.n_samples) % 10).to(device)  # classes interleaved: any prefix is balanced
    sampler = SamplerConfig(n_steps=sizes.steps)
    fidelity_labels = labels[: sizes.n_fidelity].cpu()
    rows = []

    def row(what: str, seconds: float, images: torch.Tensor, **extra) -> None:
        fid = class_fidelity(*train, images[: sizes.n_fidelity].cpu(), fidelity_labels).overall
        rows.append(_progress({"what": what, "seconds": seconds, "samples_per_s": sizes.n_samples / seconds,
                               "fidelity": fid, **extra}))

    fp32 = load_generator(device=device, precision="fp32", compile=False)
    sample_images(fp32, labels[:10], sampler=sampler)  # first-call costs (cuDNN, allocator) outside the timings
    images, s = _timed(device, lambda: sample_images(fp32, labels, sampler=sampler, batch_size=256))
    row("sample_images, batch 256, fp32 (old default)", s, images)
    images, s = _timed(device, lambda: diffusers_loop(fp32, labels, sizes.steps, 256))
    row("diffusers DDIMScheduler loop, batch 256, fp32", s, images)
    for precision, compile in (("fp32", False), ("bf16", False), ("bf16", True)):
        generator = load_generator(device=device, precision=precision, compile=compile)
        extra = {}
        if compile:  # warm-up: the full-batch shape and the padded last batch compile here
            _, extra["warmup_s"] = _timed(device, lambda g=generator: sample_images(g, labels, sampler=sampler))
        images, s = _timed(device, lambda g=generator: sample_images(g, labels, sampler=sampler))
        row(f"sample_images, device batch, {precision}{' + compile' if compile else ''}", s, images, **extra)
    return rows


def bench_mgr(device: torch.device, sizes: Sizes, dataset, split) -> list[dict]:
    generator = load_generator(device=device, precision="fp32", compile=False)
    rows = []
    for compile in (False, True):
        config = TrainConfig(method="mgr", per_class=sizes.mgr_per_class, epochs=sizes.mgr_epochs, seed=0,
                             mgr=MGROptions(sampler_steps=sizes.mgr_sampler_steps, compile=compile))
        extra = {}
        if compile:
            warm = TrainConfig(**{**config.__dict__, "epochs": 1})
            _, extra["warmup_s"] = _timed(device, lambda w=warm: train_classifier(dataset, split, w, generator, device))
        result, s = _timed(device, lambda c=config: train_classifier(dataset, split, c, generator, device))
        rows.append(_progress({"what": f"MGR {sizes.mgr_per_class}/class, {sizes.mgr_epochs} epochs"
                               f"{', compiled chain' if compile else ''}", "seconds": s,
                               "test_accuracy": result.test_accuracy, **extra}))
    return rows


def bench_generator_training(device: torch.device, sizes: Sizes, dataset, split, full: bool) -> list[dict]:
    preset = get_preset(sizes.preset)
    unet = preset.unet
    unet.sample_size, unet.channels, unet.num_classes = dataset.image_size, dataset.channels, dataset.n_classes
    images, labels = dataset.images[split.train], dataset.labels[split.train]
    rows = []
    for precision, compile in (("fp32", False), ("bf16", True)):
        total = sizes.train_warmup + sizes.train_steps
        config = GeneratorTrainConfig(**{**preset.generator.__dict__, "steps": total, "checkpoint_every": 10**9,
                                         "precision": precision, "compile": compile})
        stamps = {}

        def on_step(step: int, metrics: dict, stamps=stamps, total=total) -> None:
            if step in (sizes.train_warmup, total):
                _sync(device)
                stamps[step] = time.perf_counter()

        with tempfile.TemporaryDirectory() as out:
            stamps[0] = time.perf_counter()
            train_generator(images, labels, unet, config, out, device=device, on_step=on_step)
        per_s = sizes.train_steps / (stamps[total] - stamps[sizes.train_warmup])
        warmup_s = stamps[sizes.train_warmup] - stamps[0]  # set-up, compile and the first steps
        rows.append(_progress({"what": f"generator training, {sizes.preset} preset, batch {config.batch_size}, "
                               f"{precision}{' + compile' if compile else ''}", "steps_per_s": per_s,
                               "warmup_s": warmup_s, "projected_preset_s": warmup_s + preset.generator.steps / per_s}))
    if full:
        rows.append(_train_full_preset(device, preset, dataset, split))
    return rows


def _train_full_preset(device: torch.device, preset, dataset, split) -> dict:
    train = dataset.images[split.train], dataset.labels[split.train]
    with tempfile.TemporaryDirectory() as out:
        generator, s = _timed(device, lambda: train_generator(*train, preset.unet, preset.generator, out,
                                                              class_names=dataset.class_names, device=device))
    generator.to(device)
    labels = torch.arange(1000) % 10
    samples = sample_images(generator, labels.to(device), sampler=SamplerConfig(n_steps=25)).cpu()
    return {"what": f"generator training, whole preset ({preset.generator.steps} steps)", "seconds": s,
            "fidelity": class_fidelity(*train, samples, labels).overall}


def print_table(device: torch.device, rows: list[dict]) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{name}, torch {torch.__version__}\n")
    print("| what | seconds | samples/s | steps/s | warm-up s | fidelity | other |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        def cell(key: str, fmt: str, r=r) -> str:
            return format(r[key], fmt) if r.get(key) is not None else ""

        other = f"projected preset run {r['projected_preset_s']:.0f} s" if "projected_preset_s" in r else ""
        other = other or (f"test accuracy {r['test_accuracy']:.3f}" if r.get("test_accuracy") is not None else "")
        print(f"| {r['what']} | {cell('seconds', '.2f')} | {cell('samples_per_s', ',.0f')} | "
              f"{cell('steps_per_s', '.1f')} | {cell('warmup_s', '.1f')} | {cell('fidelity', '.3f')} | {other} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script on a CPU")
    parser.add_argument("--generator-full", action="store_true", help="also train the whole gpu preset")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = QUICK if args.quick else Sizes()
    dataset = load_digits_dataset(16)
    split = split_dataset(dataset.labels, seed=0)
    train = dataset.images[split.train], dataset.labels[split.train]
    rows = bench_sampling(device, sizes, train)
    rows += bench_mgr(device, sizes, dataset, split)
    rows += bench_generator_training(device, sizes, dataset, split, args.generator_full)
    print_table(device, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

"""Time per training step of every method relative to CE, MGR's generator / lookahead split, and run wall times.

Everything is measured in one process run, on the digits data with 10 images per class:

    python -m bench.bench_methods                 # step ratios, MGR split, a 30-epoch CE run
    python -m bench.bench_methods --full          # ... and a 30-epoch MGR run

The generator is the shipped digits model when it exists, else the default UNet architecture with the
weights of ``--unet-weights`` (a safetensors state dict), else untrained: timings do not depend on weights.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from safetensors.torch import load_file

from genreg_core.config import FeatureConfig, GeneratorTrainConfig, MGROptions, TrainConfig, UNetConfig
from genreg_core.data.datasets import load_digits_dataset, split_dataset
from genreg_core.diffusion.model import DEFAULT_GENERATOR_DIR, Generator, build_scheduler, build_unet, load_generator
from genreg_core.features.extractor import build_convnet
from genreg_core.training.loop import TrainCallbacks, train_classifier
from genreg_core.training.methods import METHODS, MethodSetup, make_method
from genreg_core.training.methods.lookahead import ddim_chain


def bench_generator(unet_weights: str | None) -> Generator:
    """The shipped model, or the default architecture with ``unet_weights`` (or untrained)."""
    if DEFAULT_GENERATOR_DIR.exists():
        print(f"generator: shipped model ({DEFAULT_GENERATOR_DIR})")
        return load_generator()
    unet = build_unet(UNetConfig())
    if unet_weights:
        unet.load_state_dict(load_file(unet_weights))
    print(f"generator: default UNet ({sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters), "
          f"weights: {unet_weights or 'untrained'}")
    unet.eval().requires_grad_(False)
    return Generator(unet, build_scheduler(GeneratorTrainConfig()), [str(i) for i in range(10)], 10)


def median_step_seconds(dataset, split, config: TrainConfig, generator: Generator) -> float:
    """Median wall time of a training step (steps right after an evaluation are left out)."""
    stamps: list[tuple[float, float]] = []
    callbacks = TrainCallbacks(on_step=lambda step, m: stamps.append((time.perf_counter(), m["epoch"])))
    train_classifier(dataset, split, config, generator, callbacks=callbacks)
    gaps = [b[0] - a[0] for a, b in zip(stamps, stamps[1:]) if a[1] == b[1]]
    return statistics.median(gaps)


def step_times(dataset, split, base: TrainConfig, generator: Generator, rounds: int) -> dict[str, float]:
    """Per method, the lowest over ``rounds`` interleaved timing runs of the median step time.

    GDA's pool is cut to 2 images per class here: its size changes the start-up, not the step.
    """
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name in METHODS:
            config = replace(base, method=name, gda=replace(base.gda, pool_per_class=2))
            seconds = median_step_seconds(dataset, split, config, generator)
            best[name] = min(seconds, best.get(name, seconds))
    return best


def mgr_split(dataset, split, config: TrainConfig, generator: Generator, repeats: int = 8) -> dict[str, float]:
    """Median seconds of MGR's meta step, of its DDIM chain with gradients (forward + backward), and of the
    no-grad chain of the classifier step; the lookahead (+ finder update) is the meta step minus the chain."""
    method = make_method("mgr", config)
    images, labels = dataset.images[split.train[:100]], dataset.labels[split.train[:100]]
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), 1, 10).train()
    rng = torch.Generator().manual_seed(0)
    method.start(MethodSetup(model, images[:80], labels[:80], 10, torch.device("cpu"), rng, generator,
                             images[80:], labels[80:]))
    x, y = images[: config.batch_size], labels[: config.batch_size]
    times: dict[str, list[float]] = {"meta_step": [], "chain_grad": [], "chain_nograd": []}
    shape = (config.mgr.synthetic_batch, generator.channels, generator.image_size, generator.image_size)
    classes = torch.zeros(config.mgr.synthetic_batch, dtype=torch.long)
    for _ in range(repeats):
        start = time.perf_counter()
        method.meta_step(model, x, y, config.lr)
        times["meta_step"].append(time.perf_counter() - start)
        u = torch.randn(shape, requires_grad=True)
        start = time.perf_counter()
        ddim_chain(generator, u, classes, config.mgr.sampler_steps, config.mgr.backprop_steps).sum().backward()
        times["chain_grad"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            ddim_chain(generator, u, classes, config.mgr.sampler_steps)
        times["chain_nograd"].append(time.perf_counter() - start)
    out = {k: statistics.median(v[1:]) for k, v in times.items()}
    out["lookahead"] = out["meta_step"] - out["chain_grad"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time a 30-epoch MGR run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each per-step timing run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing runs per method")
    parser.add_argument("--unet-weights", default=None, help="safetensors UNet state dict, if no shipped model")
    parser.add_argument("--mgr-steps", type=int, default=TrainConfig.mgr.sampler_steps, help="MGR DDIM steps")
    parser.add_argument("--mgr-backprop", type=int, default=None, help="MGR: backprop through the last k steps")
    parser.add_argument("--synthetic-batch", type=int, default=TrainConfig.mgr.synthetic_batch)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_digits_dataset(16)
    split = split_dataset(dataset.labels, seed=0)
    generator = bench_generator(args.unet_weights)
    base = TrainConfig(per_class=10, mgr=MGROptions(sampler_steps=args.mgr_steps, backprop_steps=args.mgr_backprop,
                                                    synthetic_batch=args.synthetic_batch))
    print(f"threads {args.threads}, batch {base.batch_size}, MGR: {base.mgr.sampler_steps} DDIM steps, backprop "
          f"{base.mgr.backprop_steps or 'all'}, {base.mgr.synthetic_batch} synthetic images")
    steps = step_times(dataset, split, replace(base, epochs=args.epochs), generator, args.rounds)
    for name, seconds in steps.items():
        print(f"{name:12s} {seconds * 1000:8.1f} ms/step  {seconds / steps['ce']:6.2f}× CE")
    parts = mgr_split(dataset, split, base, generator)
    print("MGR meta step {meta_step:.3f} s = DDIM chain with gradients {chain_grad:.3f} s + lookahead and finder "
          "{lookahead:.3f} s; classifier step's no-grad chain {chain_nograd:.3f} s".format(**parts))
    for name in ["ce", "mgr"] if args.full else ["ce"]:
        start = time.perf_counter()
        result = train_classifier(dataset, split, replace(base, method=name), generator)
        print(f"{name} run, 10 per class, {base.epochs} epochs: {time.perf_counter() - start:.1f} s, "
              f"test accuracy {result.test_accuracy:.3f} (best epoch {result.best_epoch})")


if __name__ == "__main__":
    main()

"""Train an ``own``-regime generator (N images per class only) and measure its time and outside fidelity.

Times the training with wall clock and process CPU time (on a shared machine the CPU time of a
one-thread run is the better estimate of an idle core), then scores 100 samples per class with the
outside logistic regression of ``genreg_core.evaluation.fidelity`` (fitted on the real training split):

    python -m experiments.own_generator --per-class 5 --seed 0 --threads 1 --out experiments/results/own_generator.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from genreg_core.config import SamplerConfig, TrainConfig
from genreg_core.diffusion.sampling import class_labels, sample_images
from genreg_core.evaluation.fidelity import class_fidelity
from genreg_core.lab import open_lab
from genreg_core.training.generator_regime import get_own_generator, own_generator_configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=100, help="samples per class for the fidelity")
    parser.add_argument("--out", default="experiments/results/own_generator.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lab = open_lab(device="cpu")
    config = replace(TrainConfig(), per_class=args.per_class, seed=args.seed, generator_regime="own")
    gen_config = own_generator_configs(lab.dataset, config)[1]
    wall, cpu = time.perf_counter(), time.process_time()
    last = [wall]

    def on_step(step: int, total: int, metrics: dict) -> None:
        if time.perf_counter() - last[0] > 30 or step == total:
            print(f"step {step}/{total} loss {metrics['loss']:.4f} {time.perf_counter() - wall:.0f} s", flush=True)
            last[0] = time.perf_counter()

    generator = get_own_generator(lab.dataset, lab.split, lab.data_config, config, "cpu", on_step)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    labels = class_labels(lab.n_classes, args.samples)
    samples = sample_images(generator, labels, sampler=SamplerConfig(n_steps=25), seed=0)
    train_x, train_y = lab.train_images()
    fidelity = class_fidelity(train_x, train_y, samples, labels, test=lab.test_images())
    row = {"per_class": args.per_class, "seed": args.seed, "steps": gen_config.steps,
           "batch_size": gen_config.batch_size, "threads": args.threads, "train_wall_s": round(wall, 1),
           "train_cpu_s": round(cpu, 1), "fidelity": round(fidelity.overall, 4),
           "fidelity_per_class": [round(f, 3) for f in fidelity.per_class],
           "reference_test_accuracy": round(fidelity.reference_test_accuracy, 4),
           "n_train_images": generator.metadata.get("n_train_images"), "config": asdict(gen_config)}
    print(json.dumps(row), flush=True)
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()

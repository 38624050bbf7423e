"""Class fidelity of the shipped generator: 100 samples per class at the default sampler settings.

    python -m experiments.fidelity [--dataset digits|fashion-mnist] [--generator shipped-early]
                                   [--per-class 100] [--steps 50] [--seed 0]

Prints the share of samples that a scikit-learn logistic regression trained on the real training images
(pixels, at the dataset's size) assigns to the requested class, overall and per class, plus the sampling
time. Its reference accuracy is measured on the dataset's fixed held-out test set when it has one
(Fashion-MNIST's 3,000 shipped test images), else on the split's test images.
"""

import argparse
import time

from genreg_core.config import DataConfig, SamplerConfig
from genreg_core.evaluation.fidelity import class_fidelity
from genreg_core.lab import open_lab


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--generator", default=None, help="a generator folder or shipped-early (default: shipped)")
    args = parser.parse_args()
    lab = open_lab(DataConfig(name=args.dataset), args.generator, device="cpu")
    held_out = lab.dataset.held_out
    test = (held_out.images, held_out.labels) if held_out is not None else lab.test_images()
    start = time.perf_counter()
    samples, labels = lab.sample(args.per_class, SamplerConfig(n_steps=args.steps), seed=args.seed)
    seconds = time.perf_counter() - start
    result = class_fidelity(*lab.train_images(), samples, labels, test=test)
    print(f"dataset: {args.dataset}, generator: {lab.generator.source}")
    print(f"samples: {len(samples)} ({args.per_class} per class), DDIM {args.steps} steps, {seconds:.1f} s")
    print(f"outside classifier (logistic regression) on real test images: {result.reference_test_accuracy:.3f}")
    print(f"class fidelity of generated samples: {result.overall:.3f}")
    print("per class: " + "  ".join(f"{c}:{v:.2f}" for c, v in enumerate(result.per_class)))


if __name__ == "__main__":
    main()

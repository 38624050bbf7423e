"""Reconstruction throughput: our exact-t sampler vs diffusers' own DDIMPipeline, measured in one run.

    python bench/bench_reconstruct.py [--n 64] [--steps 50] [--repeats 3]

Both loops drive the same unconditional UNet2DModel of the shipped architecture (1.1 M parameters;
DDIMPipeline cannot pass class labels, and timings do not depend on the weights) from t = T with the same
number of DDIM steps. The shipped class-conditional model is timed too, from t = T and from t = T/2.
"""

import argparse
import time

import torch

from genreg_core.config import GeneratorTrainConfig, SamplerConfig, UNetConfig
from genreg_core.diffusion.model import Generator, build_scheduler, build_unet, load_generator
from genreg_core.diffusion.sampling import reconstruct


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from diffusers import DDIMPipeline, DDIMScheduler

    torch.manual_seed(0)
    unet = build_unet(UNetConfig(num_classes=None)).eval().requires_grad_(False)
    generator = Generator(unet, build_scheduler(GeneratorTrainConfig()), None, None, {}, "unconditional")
    x0 = torch.zeros(args.n, 1, 16, 16)
    sampler = SamplerConfig(n_steps=args.steps)
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(generator.scheduler.config))
    pipe.set_progress_bar_config(disable=True)

    def theirs():
        with torch.inference_mode():
            pipe(batch_size=args.n, num_inference_steps=args.steps, eta=0.0, output_type="np")

    ours_s = best_of(args.repeats, lambda: reconstruct(generator, x0, None, 1000, sampler, seed=0))
    theirs_s = best_of(args.repeats, theirs)
    shipped = load_generator()
    labels = torch.arange(10).repeat(args.n // 10 + 1)[: args.n]
    full_s = best_of(args.repeats, lambda: reconstruct(shipped, x0, labels, 1000, sampler, seed=0))
    half_s = best_of(args.repeats, lambda: reconstruct(shipped, x0, labels, 500, sampler, seed=0))
    print(f"{args.n} images, 16×16, {args.steps} DDIM steps, torch threads {torch.get_num_threads()}")
    print(f"  ours (unconditional UNet, t = T)        {ours_s:6.2f} s  {args.n / ours_s:7.1f} images/s")
    print(f"  diffusers DDIMPipeline (same UNet)       {theirs_s:6.2f} s  {args.n / theirs_s:7.1f} images/s")
    print(f"  ratio ours / diffusers                   {ours_s / theirs_s:6.2f}")
    print(f"  shipped conditional model, t = T         {full_s:6.2f} s")
    print(f"  shipped conditional model, t = T/2       {half_s:6.2f} s  (same {args.steps} steps over [0, T/2])")


if __name__ == "__main__":
    main()

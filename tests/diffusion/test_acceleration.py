"""Device options of the samplers on the CPU: bit-identity with the code they replaced, bf16, batch sizes, flags."""

import math

import numpy as np
import pytest
import torch

from genreg_core.config import SamplerConfig
from genreg_core.diffusion import acceleration
from genreg_core.diffusion.acceleration import (
    BucketedUNet,
    bucket_size,
    choose_batch_size,
    resolve_compile,
    resolve_precision,
)
from genreg_core.diffusion.model import load_generator
from genreg_core.diffusion.sampling import reconstruct, reconstruct_many, reconstruct_view, sample_images, step_grid


def _main_reconstruct(generator, x0, labels, t, sampler, seed, batch_size=256, noise=None):
    """The sampler as it was on main before the device options (commit 59e2019), kept verbatim as a reference."""
    rng = torch.Generator().manual_seed(seed)
    if noise is None:
        noise = torch.randn(x0.shape, generator=rng)
    out = torch.empty_like(x0)
    for start in range(0, x0.shape[0], batch_size):
        sl = slice(start, min(x0.shape[0], start + batch_size))
        ab_t = generator.alpha_bar(t)
        x = noise[sl] if t == generator.num_train_timesteps else ab_t**0.5 * x0[sl] + (1 - ab_t) ** 0.5 * noise[sl]
        y = labels[sl]
        steps = step_grid(t, sampler)
        ab = {s: generator.alpha_bar(s) for s in steps}
        with torch.inference_mode():
            for s, s_next in zip(steps[:-1], steps[1:]):
                timestep = torch.full((x.shape[0],), s - 1, dtype=torch.long)
                if sampler.guidance_scale == 0.0:
                    eps = generator.unet(x, timestep, class_labels=y).sample
                else:
                    null = torch.full_like(y, generator.null_class)
                    eps_c, eps_u = generator.unet(torch.cat([x, x]), torch.cat([timestep, timestep]),
                                                  class_labels=torch.cat([y, null])).sample.chunk(2)
                    eps = eps_c + sampler.guidance_scale * (eps_c - eps_u)
                x0_hat = (x - math.sqrt(1 - ab[s]) * eps) / math.sqrt(ab[s])
                if sampler.clip_sample:
                    x0_hat = x0_hat.clamp(-1, 1)
                    eps = (x - math.sqrt(ab[s]) * x0_hat) / math.sqrt(1 - ab[s])
                if s_next == 0:
                    x = x0_hat
                    break
                if sampler.method == "ddpm":
                    beta = 1 - ab[s] / ab[s_next]
                    mean = (math.sqrt(ab[s_next]) * beta * x0_hat
                            + math.sqrt(1 - beta) * (1 - ab[s_next]) * x) / (1 - ab[s])
                    x = mean + math.sqrt(beta * (1 - ab[s_next]) / (1 - ab[s])) * torch.randn(x.shape, generator=rng)
                else:
                    sigma = sampler.eta * math.sqrt((1 - ab[s_next]) / (1 - ab[s]) * (1 - ab[s] / ab[s_next]))
                    x = math.sqrt(ab[s_next]) * x0_hat + math.sqrt(max(0.0, 1 - ab[s_next] - sigma**2)) * eps
                    if sampler.eta > 0:
                        x = x + sigma * torch.randn(x.shape, generator=rng)
        out[sl] = x.clamp(-1, 1)
    return out


@pytest.fixture(scope="module")
def shipped():
    return load_generator(device="cpu")


@pytest.mark.parametrize("t, sampler, batch_size", [
    (500, SamplerConfig(n_steps=4), None),
    (1000, SamplerConfig(n_steps=3, eta=0.7), None),
    (12, SamplerConfig(method="ddpm"), 4),
    (700, SamplerConfig(n_steps=3, guidance_scale=1.5), 3),
])
def test_cpu_output_is_bit_identical_to_main(tiny_generator, digits, t, sampler, batch_size):
    x0, y = digits.images[:10], digits.labels[:10]
    expected = _main_reconstruct(tiny_generator, x0, y, t, sampler, seed=3, batch_size=batch_size or 256)
    assert torch.equal(reconstruct(tiny_generator, x0, y, t, sampler, seed=3, batch_size=batch_size), expected)


def test_cpu_sampling_of_the_shipped_model_is_bit_identical_to_main(shipped):
    labels = torch.arange(10)
    sampler = SamplerConfig(n_steps=5)
    expected = _main_reconstruct(shipped, torch.zeros(10, 1, 16, 16), labels, 1000, sampler, seed=0)
    assert torch.equal(sample_images(shipped, labels, sampler=sampler, seed=0), expected)


def test_view_and_many_share_the_cpu_noise_of_main(tiny_generator, digits):
    x0, y = digits.images[:4], digits.labels[:4]
    sampler = SamplerConfig(n_steps=3)
    expected = _main_reconstruct(tiny_generator, x0, y, 400, sampler, seed=5)
    assert torch.equal(reconstruct_view(tiny_generator, x0, y, 400, sampler, seed=5).reconstructions, expected)
    assert torch.equal(reconstruct_many(tiny_generator, x0, y, [400], sampler, seed=5)[0], expected)


def test_bf16_on_cpu_runs_and_stays_close_to_fp32(shipped):
    labels = torch.arange(10).repeat(2)
    sampler = SamplerConfig(n_steps=10)
    fp32 = sample_images(shipped, labels, sampler=sampler, seed=0)
    shipped.precision = "bf16"
    try:
        bf16 = sample_images(shipped, labels, sampler=sampler, seed=0)
    finally:
        shipped.precision = "auto"
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert not torch.equal(bf16, fp32)  # autocast really ran the UNet in bf16
    assert (bf16 - fp32).abs().mean() < 0.03


def test_precision_resolves_per_device_and_rejects_unknown_names():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision"):
        load_generator(device="cpu", precision="half")


def test_compile_flag_is_validated_and_auto_only_compiles_large_cuda_jobs():
    big = acceleration.COMPILE_MIN_IMAGE_STEPS
    assert resolve_compile(None, torch.device("cpu"), 10 * big) is False
    assert resolve_compile(None, torch.device("cuda"), big) is True
    assert resolve_compile(None, torch.device("cuda"), big - 1) is False
    assert resolve_compile(True, torch.device("cpu"), 1) is True
    assert resolve_compile(False, torch.device("cuda"), 10 * big) is False
    with pytest.raises(ValueError, match="compile"):
        resolve_compile("yes", torch.device("cpu"), 1)
    with pytest.raises(ValueError, match="compile"):
        load_generator(device="cpu", compile=1)


def test_batch_size_follows_free_memory(monkeypatch, shipped):
    per_image = 16 * 16 * 16 * 64 * 4  # 16 fp32 maps of 16×16 at the widest level (64 channels): 1 MiB
    assert per_image == 2**20
    gib = 2**30
    cuda = torch.device("cuda")
    for free, guidance, expected in [(8 * gib, False, 4096), (64 * gib, False, 4096), (gib, False, 512),
                                     (gib, True, 256), (100 * 2**20, False, 32), (2**19, False, 1)]:
        monkeypatch.setattr(acceleration, "free_memory", lambda device, free=free: free)
        assert choose_batch_size(shipped.unet, cuda, guidance) == expected, (free, guidance)
    assert choose_batch_size(shipped.unet, torch.device("cpu")) == 256


def test_reconstruct_uses_the_chosen_batch_size(monkeypatch, tiny_generator, digits):
    x0, y = digits.images[:7], digits.labels[:7]
    monkeypatch.setattr("genreg_core.diffusion.sampling.choose_batch_size", lambda unet, device, guidance: 3)
    seen = []
    out = reconstruct(tiny_generator, x0, y, 300, SamplerConfig(n_steps=2), seed=1,
                      on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    torch.testing.assert_close(out, _main_reconstruct(tiny_generator, x0, y, 300, SamplerConfig(n_steps=2), 1))
    with pytest.raises(ValueError, match="batch_size"):
        reconstruct(tiny_generator, x0, y, 300, SamplerConfig(n_steps=2), batch_size=0)


def test_padded_buckets_leave_the_real_rows_unchanged(tiny_generator, digits):
    assert [bucket_size(n, 64) for n in (1, 8, 9, 33, 64)] == [8, 8, 16, 64, 64]
    assert bucket_size(100, 64) == 100 and bucket_size(20, 24) == 24
    x, y = digits.images[:5], digits.labels[:5]
    timestep = torch.full((5,), 420)
    calls = []

    def unet(x, t, class_labels=None):
        calls.append(x.shape[0])
        return tiny_generator.unet(x, t, class_labels=class_labels)

    padded = BucketedUNet(unet, 64)(x, timestep, class_labels=y).sample
    assert calls == [8] and padded.shape == x.shape
    torch.testing.assert_close(padded, tiny_generator.unet(x, timestep, class_labels=y).sample,
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(padded.numpy()).all()


@pytest.mark.slow
def test_compiled_sampler_matches_eager_on_cpu(tiny_generator, digits):
    x0, y = digits.images[:6], digits.labels[:6]
    sampler = SamplerConfig(n_steps=2)
    eager = reconstruct(tiny_generator, x0, y, 600, sampler, seed=2)
    tiny_generator.compile = True
    try:
        compiled = reconstruct(tiny_generator, x0, y, 600, sampler, seed=2)
    finally:
        tiny_generator.compile = None
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_cli_precision_and_compile_flags(tmp_path, capsys):
    from genreg_core.cli.main import main

    common = ["sample", "--per-class", "1", "--sampler-steps", "3", "--device", "cpu", "--no-compile", "--out"]
    assert main([*common, str(tmp_path / "fp32.npz"), "--precision", "fp32"]) == 0
    assert main([*common, str(tmp_path / "bf16.npz"), "--precision", "bf16"]) == 0
    fp32, bf16 = (np.load(tmp_path / f"{name}.npz")["images"] for name in ("fp32", "bf16"))
    assert not np.array_equal(fp32, bf16) and np.abs(fp32 - bf16).mean() < 0.03
    for bad in (["--precision", "fp16"], ["--compile=yes"]):
        assert main([*common, str(tmp_path / "x.npz"), *bad]) == 2
        assert bad[0].split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def _first_step_loss_by_hand(images, labels, unet_config, config):
    """Step 1 of generator training on the CPU as main drew it: weights, batch, ε, t and label dropout."""
    import torch.nn.functional as F

    from genreg_core.diffusion.model import build_scheduler, build_unet

    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    unet = build_unet(unet_config).train()
    idx = torch.randint(0, images.shape[0], (config.batch_size,), generator=rng)
    eps = torch.randn(images[idx].shape, generator=rng)
    t = torch.randint(0, config.num_train_timesteps, (config.batch_size,), generator=rng)
    drop = torch.rand(config.batch_size, generator=rng) < config.label_dropout
    y = torch.where(drop, torch.full_like(labels[idx], unet_config.num_classes), labels[idx])
    x_t = build_scheduler(config).add_noise(images[idx], eps, t)
    return F.mse_loss(unet(x_t, t, class_labels=y).sample, eps).item()


def test_generator_training_precision_on_cpu(digits, tmp_path):
    from genreg_core.config import GeneratorTrainConfig, get_preset
    from genreg_core.diffusion.training import train_generator

    unet_config = get_preset("tiny").unet
    images, labels = digits.images[:64], digits.labels[:64]
    losses = {}
    for precision in ("auto", "bf16"):
        config = GeneratorTrainConfig(steps=3, batch_size=16, warmup_steps=1, precision=precision)
        seen = []
        train_generator(images, labels, unet_config, config, tmp_path / precision,
                        on_step=lambda s, m, seen=seen: seen.append(m["loss"]))
        losses[precision] = seen
    assert losses["auto"][0] == _first_step_loss_by_hand(images, labels, unet_config, config)
    assert np.isfinite(losses["bf16"]).all() and losses["bf16"][0] != losses["auto"][0]
    assert abs(losses["bf16"][0] - losses["auto"][0]) < 0.05 * losses["auto"][0]
    for bad in (GeneratorTrainConfig(steps=1, precision="fp16"), GeneratorTrainConfig(steps=1, compile=None)):
        with pytest.raises(ValueError, match="precision|compile"):
            train_generator(images, labels, unet_config, bad, tmp_path / "bad")


def test_gpu_preset_sees_as_many_images_with_a_sqrt_scaled_learning_rate():
    from genreg_core.config import GeneratorTrainConfig, get_preset

    gpu, base = get_preset("gpu").generator, GeneratorTrainConfig()
    assert gpu.batch_size == 1024 and gpu.steps * gpu.batch_size == 20000 * 256
    assert gpu.lr == pytest.approx(base.lr * (gpu.batch_size / base.batch_size) ** 0.5)
    assert gpu.precision == "auto" and gpu.compile is True


def test_mgr_compile_flag_is_validated_and_off_by_default():
    from genreg_core.config import MGROptions, TrainConfig
    from genreg_core.training.methods import make_method

    assert TrainConfig().mgr.compile is False and make_method("mgr", TrainConfig()).compile is False
    with pytest.raises(ValueError, match="compile"):
        make_method("mgr", TrainConfig(mgr=MGROptions(compile="yes")))

"""The core on CUDA: agreement with the CPU, bf16 fidelity, t = 0, compiled sampling, MGR and generator training.

Every test here is marked ``gpu`` and skipped where CUDA is not available (see ``conftest.py``).
"""

import pytest
import torch

from genreg_core.config import GeneratorTrainConfig, SamplerConfig, TrainConfig, get_preset
from genreg_core.diffusion.acceleration import MAX_BATCH_SIZE, choose_batch_size
from genreg_core.diffusion.model import Generator, build_scheduler, build_unet, load_generator
from genreg_core.diffusion.sampling import class_labels, reconstruct, sample_images
from genreg_core.evaluation.fidelity import class_fidelity

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
# fp32 on CUDA vs the CPU: cuDNN may use TF32 for convolutions, so allow 1e-2 on average and 0.1 at any pixel
# after 10 DDIM steps (images in [-1, 1]).
AGREEMENT_MEAN, AGREEMENT_MAX = 1e-2, 0.1


@pytest.fixture(scope="module")
def shipped_cuda():
    return load_generator(device=CUDA, precision="fp32", compile=False)


def _tiny_generator(device: torch.device) -> Generator:
    torch.manual_seed(0)
    unet = build_unet(get_preset("tiny").unet).eval().requires_grad_(False).to(device)
    return Generator(unet, build_scheduler(GeneratorTrainConfig()), [str(i) for i in range(10)], 10, {}, "tiny")


def test_cpu_and_cuda_agree_on_a_fixed_noise(shipped_cuda):
    cpu = load_generator(device="cpu")
    labels = class_labels(10, 3)
    noise = torch.randn(30, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    sampler = SamplerConfig(n_steps=10)
    x0 = torch.zeros(30, 1, 16, 16)
    on_cpu = reconstruct(cpu, x0, labels, 1000, sampler, noise=noise)
    on_cuda = reconstruct(shipped_cuda, x0, labels.to(CUDA), 1000, sampler, noise=noise.to(CUDA)).cpu()
    diff = (on_cpu - on_cuda).abs()
    assert diff.mean() < AGREEMENT_MEAN and diff.max() < AGREEMENT_MAX


def test_same_seed_same_cuda_output_and_t0_identity(shipped_cuda, digits):
    labels = class_labels(10, 2).to(CUDA)
    sampler = SamplerConfig(n_steps=5)
    a = sample_images(shipped_cuda, labels, sampler=sampler, seed=1)
    b = sample_images(shipped_cuda, labels, sampler=sampler, seed=1)
    assert torch.equal(a, b)
    x0 = digits.images[:8].to(CUDA)
    assert torch.equal(reconstruct(shipped_cuda, x0, digits.labels[:8].to(CUDA), 0, sampler), x0)


def test_cuda_batch_size_comes_from_free_memory(shipped_cuda):
    batch = choose_batch_size(shipped_cuda.unet, CUDA)
    assert 1 <= batch <= MAX_BATCH_SIZE and batch & (batch - 1) == 0
    assert choose_batch_size(shipped_cuda.unet, CUDA, guidance=True) <= batch


def test_bf16_keeps_the_outside_classifier_fidelity(digits, digits_split):
    train = digits.images[digits_split.train], digits.labels[digits_split.train]
    labels = class_labels(10, 50)
    sampler = SamplerConfig(n_steps=25)
    scores = {}
    for precision in ("fp32", "bf16"):
        generator = load_generator(device=CUDA, precision=precision, compile=False)
        samples = sample_images(generator, labels.to(CUDA), sampler=sampler, seed=0).cpu()
        scores[precision] = class_fidelity(*train, samples, labels).overall
    assert scores["bf16"] >= 0.95 and scores["bf16"] >= scores["fp32"] - 0.02, scores


def test_compiled_sampler_matches_eager():
    labels = class_labels(10, 4).to(CUDA)
    sampler = SamplerConfig(n_steps=5)
    eager = sample_images(load_generator(device=CUDA, precision="bf16", compile=False), labels, sampler=sampler)
    compiled = sample_images(load_generator(device=CUDA, precision="bf16", compile=True), labels, sampler=sampler)
    assert (eager - compiled).abs().mean() < 2e-2


@pytest.mark.parametrize("compile", [False, True])
def test_tiny_mgr_run_on_cuda(digits, digits_split, compile):
    from genreg_core.training.loop import train_classifier

    config = TrainConfig.tiny("mgr")
    config.epochs, config.mgr.compile = 2, compile
    result = train_classifier(digits, digits_split, config, _tiny_generator(CUDA), CUDA)
    assert result.status == "finished" and len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    assert result.history[-1]["finder_grad_norm"] > 0


@pytest.mark.parametrize("precision, compile", [("fp32", False), ("bf16", True)])
def test_tiny_generator_training_on_cuda(digits, tmp_path, precision, compile):
    from genreg_core.diffusion.training import train_generator

    losses = []
    config = GeneratorTrainConfig(steps=12, batch_size=64, warmup_steps=2, checkpoint_every=6, precision=precision,
                                  compile=compile)
    generator = train_generator(digits.images[:256], digits.labels[:256], get_preset("tiny").unet, config,
                                tmp_path / "g", class_names=[str(i) for i in range(10)], device=CUDA,
                                on_step=lambda step, metrics: losses.append(metrics["loss"]))
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-4:]) < sum(losses[:4])
    reloaded = load_generator(tmp_path / "g", device=CUDA)
    assert sample_images(reloaded, class_labels(10, 1).to(CUDA), sampler=SamplerConfig(n_steps=2)).isfinite().all()
    assert generator.unet.training is False

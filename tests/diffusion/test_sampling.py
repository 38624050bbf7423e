import pytest
import torch

from genreg_core.config import SamplerConfig
from genreg_core.diffusion.sampling import add_noise, reconstruct, reverse_process, sample_images, step_grid


@pytest.fixture
def batch(digits):
    return digits.images[:6], digits.labels[:6]


def test_step_grid_is_exact_and_decreasing():
    for t in (1, 7, 250, 999, 1000):
        grid = step_grid(t, SamplerConfig(n_steps=10))
        assert grid[0] == t and grid[-1] == 0
        assert all(a > b for a, b in zip(grid, grid[1:]))
        assert len(grid) == min(10, t) + 1
    assert step_grid(5, SamplerConfig(method="ddpm")) == [5, 4, 3, 2, 1, 0]
    assert step_grid(0, SamplerConfig()) == [0]


def test_t_zero_returns_input_unchanged(tiny_generator, batch):
    x0, y = batch
    out = reconstruct(tiny_generator, x0, y, 0, SamplerConfig(n_steps=3))
    assert torch.equal(out, x0)


def test_same_seed_same_output_and_other_seed_differs(tiny_generator, batch):
    x0, y = batch
    sampler = SamplerConfig(n_steps=3)
    a = reconstruct(tiny_generator, x0, y, 500, sampler, seed=1)
    b = reconstruct(tiny_generator, x0, y, 500, sampler, seed=1)
    c = reconstruct(tiny_generator, x0, y, 500, sampler, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x0.shape and a.min() >= -1 and a.max() <= 1


def test_batching_does_not_change_ddim_output(tiny_generator, batch):
    x0, y = batch
    sampler = SamplerConfig(n_steps=3)
    whole = reconstruct(tiny_generator, x0, y, 300, sampler, seed=4, batch_size=64)
    split = reconstruct(tiny_generator, x0, y, 300, sampler, seed=4, batch_size=2)
    torch.testing.assert_close(whole, split)


def test_t_T_ignores_the_input(tiny_generator, batch):
    x0, y = batch
    sampler = SamplerConfig(n_steps=3)
    a = reconstruct(tiny_generator, x0, y, 1000, sampler, seed=0)
    b = reconstruct(tiny_generator, -x0, y, 1000, sampler, seed=0)
    assert torch.equal(a, b)


def test_small_t_stays_close_to_the_input(tiny_generator, batch):
    x0, y = batch
    near = reconstruct(tiny_generator, x0, y, 1, SamplerConfig(n_steps=1))
    far = reconstruct(tiny_generator, x0, y, 1000, SamplerConfig(n_steps=3))
    assert (near - x0).pow(2).mean() < 0.01 < (far - x0).pow(2).mean()


def test_forward_process_matches_scheduler(tiny_generator, batch):
    x0, _ = batch
    noise = torch.randn_like(x0)
    ours = add_noise(tiny_generator, x0, 400, noise)
    theirs = tiny_generator.scheduler.add_noise(x0, noise, torch.tensor([399]))
    torch.testing.assert_close(ours, theirs)


def test_ddpm_guidance_and_trajectory(tiny_generator, batch):
    x0, y = batch
    out = reconstruct(tiny_generator, x0, y, 5, SamplerConfig(method="ddpm"), seed=0)
    assert out.shape == x0.shape and torch.isfinite(out).all()
    guided = reconstruct(tiny_generator, x0, y, 200, SamplerConfig(n_steps=2, guidance_scale=2.0), seed=0)
    plain = reconstruct(tiny_generator, x0, y, 200, SamplerConfig(n_steps=2), seed=0)
    assert not torch.equal(guided, plain)
    result = reverse_process(tiny_generator, torch.randn_like(x0), y, 100, SamplerConfig(n_steps=4),
                             record_trajectory=True)
    assert result.x0_trajectory.shape == (4, *x0.shape)
    assert result.steps == [100, 75, 50, 25, 0]


def test_bad_t_and_labels_raise(tiny_generator, batch):
    x0, y = batch
    with pytest.raises(ValueError, match="start step"):
        reconstruct(tiny_generator, x0, y, 1001)
    with pytest.raises(ValueError, match="labels must lie"):
        reconstruct(tiny_generator, x0, y + 20, 10)
    with pytest.raises(ValueError, match="give labels"):
        sample_images(tiny_generator, None)


def test_sample_images_one_per_label(tiny_generator):
    labels = torch.arange(10).repeat_interleave(2)
    images = sample_images(tiny_generator, labels, sampler=SamplerConfig(n_steps=2), seed=0)
    assert images.shape == (20, 1, 16, 16)


@pytest.mark.parametrize("timestep", [500, 999, 50])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_step_matches_diffusers_ddim_scheduler(timestep, clip):
    """One DDIM update equals diffusers' ``DDIMScheduler.step`` (η = 0) on the same ᾱ pair, the last step to ᾱ = 1
    included; clipping recomputes ε̂ like diffusers' ``use_clipped_model_output``."""
    from diffusers import DDIMScheduler

    from genreg_core.diffusion.sampling import ddim_step

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip,
                              set_alpha_to_one=True)
    scheduler.set_timesteps(10)  # prev_timestep = timestep - 100
    g = torch.Generator().manual_seed(timestep)
    x, eps = 1.5 * torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    expected = scheduler.step(eps, timestep, x, eta=0.0, use_clipped_model_output=True).prev_sample
    ac = scheduler.alphas_cumprod
    ab_next = float(ac[timestep - 100]) if timestep >= 100 else 1.0
    ours, x0_hat = ddim_step(x, eps, float(ac[timestep]), ab_next, clip=clip)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert not clip or float(x0_hat.abs().max()) <= 1.0

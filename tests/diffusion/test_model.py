import json

import pytest
import torch

from genreg_core.config import GeneratorTrainConfig, UNetConfig, get_preset
from genreg_core.diffusion.model import DEFAULT_GENERATOR_DIR, Generator, load_generator, save_generator
from genreg_core.diffusion.training import train_generator


def test_save_load_roundtrip(tiny_generator, tmp_path):
    save_generator(tiny_generator, tmp_path / "gen")
    assert (tmp_path / "gen" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    loaded = load_generator(tmp_path / "gen")
    assert loaded.num_classes == 10 and loaded.null_class == 10 and loaded.class_names == tiny_generator.class_names
    x, t, y = torch.randn(2, 1, 16, 16), torch.tensor([3, 500]), torch.tensor([1, 2])
    expected = tiny_generator.unet(x, t, class_labels=y).sample
    torch.testing.assert_close(loaded.unet(x, t, class_labels=y).sample, expected)


def test_unet_only_folder_loads_with_default_schedule(tiny_generator, tmp_path):
    tiny_generator.unet.save_pretrained(tmp_path / "unet_only")
    loaded = load_generator(tmp_path / "unet_only")
    assert loaded.num_train_timesteps == 1000 and loaded.conditional


def test_corrupt_checkpoint_gives_clear_error(tiny_generator, tmp_path):
    folder = save_generator(tiny_generator, tmp_path / "gen")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage, not safetensors")
    with pytest.raises(ValueError, match="cannot load generator"):
        load_generator(folder)


def test_missing_or_foreign_folder_gives_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_generator(tmp_path / "missing")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(ValueError, match="not a diffusers"):
        load_generator(tmp_path / "foreign")


def test_pickle_weights_are_refused(tiny_generator, tmp_path):
    folder = save_generator(tiny_generator, tmp_path / "gen")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(tiny_generator.unet.state_dict(), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ValueError, match="cannot load generator"):
        load_generator(folder)


def test_shipped_generator_metadata():
    gen = load_generator()
    meta = json.loads((DEFAULT_GENERATOR_DIR / "genreg.json").read_text())
    assert gen.conditional and gen.num_classes == 10 and gen.channels == 1 and gen.image_size == 16
    assert "command" in meta and meta["train_config"]["seed"] == 0
    size = sum(p.stat().st_size for p in DEFAULT_GENERATOR_DIR.rglob("*") if p.is_file())
    assert size < 20 * 2**20


def test_training_lowers_loss_and_resumes(digits, tmp_path):
    preset = get_preset("tiny")
    losses = []
    config = GeneratorTrainConfig(steps=6, batch_size=16, warmup_steps=1, checkpoint_every=3)
    gen = train_generator(digits.images[:64], digits.labels[:64], preset.unet, config, tmp_path / "g",
                          class_names=[str(i) for i in range(10)], on_step=lambda s, m: losses.append((s, m["loss"])))
    assert isinstance(gen, Generator) and [s for s, _ in losses] == list(range(1, 7))
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in losses)
    resumed = []
    config.steps = 8
    train_generator(digits.images[:64], digits.labels[:64], preset.unet, config, tmp_path / "g",
                    on_step=lambda s, m: resumed.append(s))
    assert resumed == [7, 8]
    assert load_generator(tmp_path / "g").metadata["train_config"]["steps"] == 8


def test_training_rejects_mismatched_images(digits, tmp_path):
    with pytest.raises(ValueError, match="do not fit"):
        train_generator(digits.images[:8], digits.labels[:8], UNetConfig(channels=3), GeneratorTrainConfig(steps=1),
                        tmp_path / "g")


def test_snapshot_saves_the_ema_at_that_step(digits, tmp_path):
    preset = get_preset("tiny")
    names = [str(i) for i in range(10)]
    # both runs stay inside the 2-step warm-up up to step 2, so their learning rates agree there
    config = GeneratorTrainConfig(steps=4, batch_size=8, warmup_steps=2, checkpoint_every=100)
    train_generator(digits.images[:32], digits.labels[:32], preset.unet, config, tmp_path / "final",
                    class_names=names, snapshots={2: tmp_path / "early"})
    short = GeneratorTrainConfig(steps=2, batch_size=8, warmup_steps=2, checkpoint_every=100)
    reference = train_generator(digits.images[:32], digits.labels[:32], preset.unet, short, tmp_path / "two",
                                class_names=names)
    early, final = load_generator(tmp_path / "early"), load_generator(tmp_path / "final")
    assert early.metadata["snapshot_step"] == 2 and final.metadata["step"] == 4
    for (name, a), b in zip(early.unet.state_dict().items(), reference.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, b) for a, b in zip(early.unet.state_dict().values(),
                                                       final.unet.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="snapshot step 9"):
        train_generator(digits.images[:8], digits.labels[:8], preset.unet, config, tmp_path / "bad",
                        snapshots={9: tmp_path / "x"})

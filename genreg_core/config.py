"""Dataclass configs, one comment per field, and named presets (``tiny`` for tests, ``default``, ``gpu``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

SamplerMethod = Literal["ddim", "ddpm"]
GeneratorRegime = Literal["pool", "own"]
GENERATOR_REGIMES = ("pool", "own")
PcrReduction = Literal["sum", "mean"]
MgrLookahead = Literal["sgd", "adam"]
InitName = Literal["scratch", "pretrained"]
MetaValBudget = Literal["within", "extra"]
META_VAL_BUDGETS = ("within", "extra")


NATIVE_IMAGE_SIZES = {"fashion-mnist": 28}  # a dataset's default image side; every other dataset defaults to 16


def default_image_size(name: str) -> int:
    """The image side a dataset is used at unless asked otherwise: 28 for Fashion-MNIST (its native size:
    16×16 would blur away the textures and outlines that separate shirts from pullovers and coats), else 16."""
    return NATIVE_IMAGE_SIZES.get(name, 16)


@dataclass
class DataConfig:
    name: str = "digits"  # digits | fashion-mnist | imagefolder | mnist | cifar10
    root: str | None = None  # image folder, Fashion-MNIST's IDX folder (None = shipped subset), or torchvision root
    image_size: int | None = None  # images are resized to image_size²; None = the dataset's default_image_size
    channels: int | None = None  # image folders: 1 or 3; None infers from the files
    download: bool = False  # torchvision only: fetch the files if they are missing
    split_seed: int = 0  # seed of the fixed stratified train / val / test split
    val_fraction: float = 0.2  # share of the data held out for validation
    test_fraction: float = 0.2  # share of the data held out for testing

    def __post_init__(self) -> None:
        if self.image_size is None:
            self.image_size = default_image_size(self.name)


@dataclass
class UNetConfig:
    sample_size: int = 16  # image side in pixels
    channels: int = 1  # image channels
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # channels per resolution level
    attention_levels: tuple[bool, ...] = (False, True, False)  # self-attention per level
    layers_per_block: int = 1  # ResNet blocks per level
    norm_num_groups: int = 8  # GroupNorm groups
    attention_head_dim: int = 32  # channels per attention head
    num_classes: int | None = 10  # class-conditional when set; one extra embedding is the "no class" token


@dataclass
class GeneratorTrainConfig:
    steps: int = 4000  # optimizer steps
    batch_size: int = 128  # images per step
    lr: float = 5e-4  # AdamW peak learning rate
    warmup_steps: int = 200  # linear learning-rate warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # gradient-norm clip
    ema_decay: float = 0.999  # EMA of the weights (the shipped weights are the EMA)
    label_dropout: float = 0.1  # probability of the "no class" token, for classifier-free guidance
    num_train_timesteps: int = 1000  # T
    beta_start: float = 1e-4  # linear β schedule start
    beta_end: float = 0.02  # linear β schedule end
    checkpoint_every: int = 500  # steps between resumable checkpoints
    seed: int = 0  # seed of weights, batches and noise
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the UNet's training forward (pays a warm-up once per process)


@dataclass
class SamplerConfig:
    method: SamplerMethod = "ddim"  # ddim (deterministic for eta = 0) or ddpm ancestral
    n_steps: int = 50  # DDIM steps spread over [0, t]; DDPM always takes t steps
    guidance_scale: float = 0.0  # classifier-free guidance w; 0 = plain conditional
    eta: float = 0.0  # DDIM stochasticity (0 = ODE)
    clip_sample: bool = True  # clip the predicted x̂_0 to [-1, 1] at every step


@dataclass
class FeatureConfig:
    width: int = 32  # channels of the first conv block (doubled twice)
    feature_dim: int = 128  # size d of the penultimate feature
    epochs: int = 30  # training epochs on the real training split
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 5e-4  # Adam weight decay
    augment: bool = True  # random shift / rotation during training
    seed: int = 0  # seed of weights and batches


@dataclass
class BackboneConfig:
    """Self-supervised pretraining of the classifier's backbone g (SimCLR's NT-Xent, no labels)."""

    width: int = 32  # channels of the first conv block (as FeatureConfig / TrainConfig)
    feature_dim: int = 128  # size d of g(x) (as FeatureConfig / TrainConfig)
    projection_dim: int = 64  # output of the 2-layer projection head the loss acts on (dropped after training)
    epochs: int = 60  # passes over the unlabelled pool
    batch_size: int = 128  # images per step; each gives two augmented views
    lr: float = 2e-3  # Adam peak learning rate, one-cycle schedule
    weight_decay: float = 1e-5  # Adam weight decay
    temperature: float = 0.2  # NT-Xent temperature τ
    seed: int = 0  # seed of weights, batches and augmentations


@dataclass
class GDAOptions:
    """Naive generative data augmentation (``training.methods.gda``)."""

    ratio: float = 1.0  # ρ: synthetic pairs per real pair in each batch
    pool_per_class: int = 50  # synthetic images per class generated once before training
    sampler_steps: int = 25  # DDIM steps used to generate the pool
    pool_folder: str | None = None  # a curated export (ROOT/<class>/*.png + manifest.json) used as the pool instead
    # of generating one (analysis.curation; the train-on-curated check)


@dataclass
class RandRegOptions:
    """RandReg's feature regularizer (``training.methods.randreg``); AdaRand uses it too."""

    weight: float = 1.0  # λ of the feature loss mean((g(x) − z)²)


@dataclass
class AdaRandOptions:
    """AdaRand's adaptive prior (``training.methods.adarand``); its λ is ``RandRegOptions.weight``."""

    alpha: float = 0.5  # α of the running class means μ̄
    prior_lr: float = 1e-2  # Adam learning rate of the prior means μ


@dataclass
class MGROptions:
    """MGR's pseudo consistency regularization and meta pseudo sampling (``training.methods.mgr``)."""

    weight: float = 1.0  # λ of the pseudo consistency regularization L_PCR
    finder_lr: float = 1e-3  # Adam learning rate of the finder F_ω
    meta_period: int = 1  # one meta (MPS) step every this many classifier steps
    sampler_steps: int = 10  # DDIM steps of the differentiable chain from F_ω(u) to x_p
    backprop_steps: int | None = None  # backprop through the UNet in the last k DDIM steps only; None = all
    synthetic_batch: int = 16  # synthetic images per step
    pcr_reduction: PcrReduction = "mean"  # ‖g(T₁x) − g(T₂x)‖² summed or averaged over the d feature dims
    finder_conditional: bool = False  # (ours) the finder also sees the class c, F_ω(u, c)
    lookahead: MgrLookahead = "sgd"  # lookahead θ' by plain SGD, or (ours) the classifier's Adam step
    meta_steps: int = 1  # finder updates per meta period (each on a fresh u)
    compare_random: bool = True  # also look ahead on G(u, c) to record whether F_ω(u) beat random u
    compile: bool = False  # torch.compile the UNet of the differentiable DDIM chain (for CUDA; warm-up once)


@dataclass
class SemanticOptions:
    """Semantic perturbations of DDIM-inverted latents (``training.methods.semantic``; Yüksel et al., ICCV 2021)."""

    perturbation: str = "rand"  # rand | away | adv
    norm: str = "linf"  # l2 | linf ball of the latent perturbation (per image, over C·H·W)
    eps: float | None = None  # radius ε; None = the paper's default (rand 0.2, away 0.15, adv 0.05)
    alpha: float | None = None  # adv: PGD step size α; None = ε (paper: α = ε = 0.05)
    pgd_steps: int = 1  # adv: PGD steps K (paper: 1)
    ratio: float = 0.5  # mix ratio ρ, L = (1 − ρ) CE(clean) + ρ CE(perturbed); 0 = plain CE (ours)
    tau: int = 500  # DDIM inversion depth τ of the latents (ours)
    sampler_steps: int = 10  # DDIM steps of the inversion and of the decoding (ours)


@dataclass
class GSSLOptions:
    """GSSL: meta-optimized synthetic samples as unlabelled data (``training.methods.gssl``)."""

    weight: float = 1.0  # λ of the unsupervised loss 1 − cos(g(T₁x), g(T₂x)) on synthetic samples
    sim_weight: float = 0.1  # γ of the similarity-to-real term of the latent objective (ours)
    latent_lr: float = 0.05  # β: RMS move of each picked latent per meta step (ours)
    bank_per_class: int = 10  # optimized latents per class, drawn from N(0, I) at the start (ours)
    meta_period: int = 1  # one latent (meta) step every this many classifier steps
    sampler_steps: int = 10  # DDIM steps of the differentiable chain from z to x_p
    backprop_steps: int | None = None  # backprop through the UNet in the last k DDIM steps only; None = all
    synthetic_batch: int = 16  # synthetic images per step


METHOD_OPTIONS = {"gda": GDAOptions, "randreg": RandRegOptions, "adarand": AdaRandOptions, "mgr": MGROptions,
                  "semantic": SemanticOptions, "gssl": GSSLOptions}  # TrainConfig field -> its options class


@dataclass
class TrainConfig:
    """One classifier training run (``training.loop.train_classifier``); each method's options in their own field."""

    method: str = "ce"  # a name of ``training.methods.METHODS`` (ce, gda, randreg, adarand, mgr, ...)
    # backbone g at step 0: "scratch" = random weights; "pretrained" = the self-supervised backbone of the
    # unlabelled training pool (genreg_core.features.backbone; no labels beyond the per-class subset), head fresh
    init: InitName = "scratch"
    per_class: int | None = 10  # real training images per class drawn from the train split; None = all
    epochs: int = 30  # passes over the (small) training set
    batch_size: int = 16  # real images per step
    lr: float = 3e-3  # Adam peak learning rate, cosine-decayed towards 0 over the run
    weight_decay: float = 5e-4  # Adam (L2) weight decay
    augment: bool = True  # T(·): random shift / rotation of real batches
    seed: int = 0  # seed of the weights, the per-class subset, the batches and every random draw
    generator_regime: GeneratorRegime = "pool"  # pool: the lab's generator (the shipped one saw the whole labelled
    # train split); own: a generator trained only on this run's per_class images (training.generator_regime)
    own_generator_preset: str = "default"  # own regime: the preset whose unet and own_generator configs train it
    width: int = 32  # classifier channels of the first conv block (ConvNet, as FeatureConfig)
    feature_dim: int = 128  # classifier feature size d (ConvNet, as FeatureConfig)
    meta_val_fraction: float = 0.2  # MGR / GSSL: share of the training subset held out as B_val (≥ 1 per class)
    # MGR / GSSL label budget: "within" = B_val is held out of the per_class images (N labels per class in all, the
    # cross-entropy sees fewer); "extra" = B_val is drawn in addition from the rest of the train split (the
    # cross-entropy sees the same N per class as CE, the method uses N + |B_val| / K labels per class)
    meta_val_budget: MetaValBudget = "within"
    gda: GDAOptions = field(default_factory=GDAOptions)
    randreg: RandRegOptions = field(default_factory=RandRegOptions)
    adarand: AdaRandOptions = field(default_factory=AdaRandOptions)
    mgr: MGROptions = field(default_factory=MGROptions)
    semantic: SemanticOptions = field(default_factory=SemanticOptions)
    gssl: GSSLOptions = field(default_factory=GSSLOptions)

    @classmethod
    def tiny(cls, method: str = "ce") -> TrainConfig:
        """A run that takes about a second on CPU with the tiny generator, for tests."""
        return cls(method=method, per_class=5, epochs=3, batch_size=16, width=8, feature_dim=32,
                   gda=GDAOptions(pool_per_class=4, sampler_steps=2),
                   mgr=MGROptions(sampler_steps=2, synthetic_batch=4),
                   semantic=SemanticOptions(sampler_steps=2),
                   gssl=GSSLOptions(sampler_steps=2, synthetic_batch=4, bank_per_class=2), own_generator_preset="tiny")

    def mgr_teaching(self) -> TrainConfig:
        """This config with MGR's teaching setting: three finder updates per step at a 30× larger finder lr,
        so that the meta-selected latents move visibly away from the random ones (slower: more DDIM chains)."""
        return replace(self, mgr=replace(self.mgr, finder_lr=3e-2, meta_steps=3))


@dataclass
class Preset:
    """A named bundle of configs."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    generator: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    own_generator: GeneratorTrainConfig = field(default_factory=lambda: GeneratorTrainConfig(
        steps=1200, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=200))
    # the "own" regime's generator: trained on the N-per-class subset only, a few CPU minutes


def _tiny() -> Preset:
    return Preset(
        unet=UNetConfig(block_out_channels=(16, 32), attention_levels=(False, True), attention_head_dim=16),
        generator=GeneratorTrainConfig(steps=20, batch_size=32, warmup_steps=2, checkpoint_every=10),
        sampler=SamplerConfig(n_steps=5),
        features=FeatureConfig(width=8, feature_dim=32, epochs=2),
        training=TrainConfig.tiny(),
        own_generator=GeneratorTrainConfig(steps=4, batch_size=8, warmup_steps=1, checkpoint_every=2),
    )


def _gpu() -> Preset:
    # The same 5.1 M training images as 20,000 steps of 256, in 5,000 steps of 1,024 (fewer, larger launches);
    # the peak learning rate grows with the square root of the batch (5e-4 at 128 → 1.41e-3 at 1,024).
    return Preset(
        unet=UNetConfig(block_out_channels=(64, 128, 128), layers_per_block=2),
        generator=GeneratorTrainConfig(steps=5000, batch_size=1024, lr=5e-4 * (1024 / 128) ** 0.5, warmup_steps=500,
                                       precision="auto", compile=True),
    )


PRESETS = {"tiny": _tiny, "default": Preset, "gpu": _gpu}


def get_preset(name: str) -> Preset:
    """Return a fresh copy of the named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]()


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict (``asdict`` of one), ignoring unknown keys, restoring tuples and nested option
    dataclasses. A ``TrainConfig`` saved before the options were grouped (flat ``mgr_weight`` and the like) loads
    with the same values."""
    values = _grouped_legacy_keys(values) if cls is TrainConfig else values
    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
            nested = METHOD_OPTIONS.get(f.name) if cls is TrainConfig else None
            if nested is not None and isinstance(value, dict):
                value = config_from_dict(nested, value)
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _grouped_legacy_keys(values: dict[str, Any]) -> dict[str, Any]:
    """``{"mgr_weight": 2}`` -> ``{"mgr": {"weight": 2}}``; ``mgr_val_fraction`` -> ``meta_val_fraction``."""
    out = {k: v for k, v in values.items() if k not in ("mgr_val_fraction",)}
    if "mgr_val_fraction" in values and "meta_val_fraction" not in values:
        out["meta_val_fraction"] = values["mgr_val_fraction"]
    for group, options in METHOD_OPTIONS.items():
        names = {f.name for f in fields(options)}
        flat = {k[len(group) + 1:]: out.pop(k) for k in list(out) if k.startswith(group + "_") and
                k[len(group) + 1:] in names}
        if flat and not isinstance(out.get(group), dict):
            out[group] = flat
    return out


def override(config: Any, key: str, value: Any) -> Any:
    """A copy of the dataclass ``config`` with the field at the dotted path ``key`` (``"mgr.weight"``) set to
    ``value``; ``ValueError`` for a path that names no field."""
    head, _, rest = key.partition(".")
    if not is_dataclass(config) or head not in {f.name for f in fields(config)}:
        raise ValueError(f"no config field {key!r}")
    if not rest:
        return replace(config, **{head: value})
    return replace(config, **{head: override(getattr(config, head), rest, value)})

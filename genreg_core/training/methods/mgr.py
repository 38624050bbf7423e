"""MGR: meta generative regularization (docs/algorithms.md §5).

"Regularizing Neural Networks with Meta-Learning Generative Models" (Yamaguchi, Chijiwa, Kanai,
Kumagai, Kashima; NeurIPS 2023). Synthetic samples enter only a regularizer on the feature extractor,
never the cross-entropy or the head:

- PCR: ``L_PCR(x_p) = ‖g(T₁(x_p)) − g(T₂(x_p))‖²`` averaged over the batch (ours: two random T(·) of one image).
- MPS: a finder ``F_ω(u) = u + conv(u)`` maps ``u ~ N(0, I)`` to the initial noise of a deterministic DDIM
  chain through the frozen UNet, ``x_p = G(F_ω(u), c)``, run with gradients.
- Bilevel step with a one-step lookahead (``torch.func.functional_call`` on a dict of parameters):
  1. ``θ' = θ − η ∇_θ [L_real(B_tr; θ) + λ L_PCR(G(F_ω(u)); g_θ)]`` (graph kept),
  2. ``ω ← Adam step on CE(B_val; θ')``,
  3. classifier step on ``L_real + λ L_PCR(G(F_ω(u')).detach())``.
  ``L_real`` is the base method's real-batch loss: CE for ``mgr``, CE + AdaRand's feature loss for
  ``mgr+adarand``.

Options where the paper is silent (ours, ``methods/mgr_options.py``): PCR summed or averaged over d, a
class-conditioned finder ``F_ω(u, c)``, an Adam lookahead in the classifier's optimizer geometry, several
finder updates per step, and a recorded comparison of every meta step against the random latents ``u``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genreg_core.config import MGROptions, TrainConfig
from genreg_core.features.augment import random_shift_rotate
from genreg_core.features.extractor import ConvNet
from genreg_core.training.methods.adarand import AdaRand
from genreg_core.training.methods.base import (
    Forward,
    Method,
    MethodSetup,
    Metrics,
    functional_forward,
    model_params,
    module_forward,
    randn,
)
from genreg_core.training.methods.ce import CrossEntropy
from genreg_core.training.methods.lookahead import alignment_influence, ddim_chain, lookahead, lookahead_validation
from genreg_core.training.methods.mgr_options import ConditionalFinder, adam_lookahead


class Finder(nn.Module):
    """``F_ω(u) = u + conv(u)``: two 3×3 convolutions, the last one zero-initialised, so ``F_ω`` starts as identity."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU(),
                                      nn.Conv2d(hidden, channels, 3, padding=1))
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.residual(u)  # (N, C, H, W)


def pcr_per_sample(forward: Forward, x_p: torch.Tensor, rng: torch.Generator, reduction: str = "mean") -> torch.Tensor:
    """``‖g(T₁(x_p)) − g(T₂(x_p))‖²`` per synthetic image, (N,), summed (the paper) or averaged over the d feature
    dimensions (``reduction``); both views go through one forward pass.

    The two are one knob: the mean is the sum with λ/d. The default (mean, λ = 1, i.e. λ_sum ≈ 0.008) came from a
    sweep that ranked by *test* accuracy under per-seed splits (experiments/results/mgr_sweep_per_seed_split.jsonl).
    Rerun under the validation rule (``experiments.mgr_sweep``, experiments/results/mgr_sweep.md: digits, 5 per
    class, 3 seeds), validation prefers the sum with λ = 0.03 by +2.2 points, 95 % interval [−0.3, 4.7]: not told
    apart from the default, which is unchanged. λ_sum ≥ 0.1 is clearly worse; the sum with λ = 1 collapses the features.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown PCR reduction {reduction!r} (known: sum, mean)")
    views = torch.cat([random_shift_rotate(x_p, rng=rng), random_shift_rotate(x_p, rng=rng)])  # (2N, C, H, W)
    f1, f2 = forward(views)[0].chunk(2)  # (N, d) each
    squared = (f1 - f2).pow(2)
    return squared.sum(1) if reduction == "sum" else squared.mean(1)


class MGR(Method):
    """Meta generative regularization on top of a base method's real-batch loss (CE, or AdaRand's)."""

    name = "mgr"
    note = "MGR (Yamaguchi et al., NeurIPS 2023): meta-selected synthetic samples in a feature regularizer"
    needs_generator = True
    needs_meta_validation = True
    records_latents = True

    def __init__(self, base: Method, options: MGROptions | None = None, val_batch: int = 32):
        o = options or MGROptions()
        if o.weight < 0 or min(o.meta_period, o.sampler_steps, o.synthetic_batch, val_batch, o.meta_steps) < 1:
            raise ValueError("MGR needs λ ≥ 0 and a meta period, meta steps, sampler steps and batch sizes of at "
                             "least 1")
        if o.pcr_reduction not in ("sum", "mean"):
            raise ValueError(f"unknown PCR reduction {o.pcr_reduction!r} (known: sum, mean)")
        if o.lookahead not in ("sgd", "adam"):
            raise ValueError(f"unknown MGR lookahead {o.lookahead!r} (known: sgd, adam)")
        if not isinstance(o.compile, bool):
            raise ValueError(f"MGR compile must be true or false, got {o.compile!r}")
        if o.backprop_steps is not None and o.backprop_steps < 1:
            raise ValueError(f"MGR backprop_steps must be at least 1 (or None for all), got {o.backprop_steps}")
        self.base = base
        self.name = "mgr" if base.name == "ce" else f"mgr+{base.name}"
        self.weight = o.weight
        self.finder_lr = o.finder_lr
        self.meta_period = o.meta_period
        self.sampler_steps = o.sampler_steps
        self.backprop_steps = o.backprop_steps
        self.synthetic_batch = o.synthetic_batch
        self.val_batch = val_batch
        self.pcr_reduction = o.pcr_reduction
        self.finder_conditional = o.finder_conditional
        self.lookahead = o.lookahead
        self.meta_steps = o.meta_steps
        self.compare_random = o.compare_random
        self.compile = o.compile

    @classmethod
    def from_config(cls, config: TrainConfig) -> MGR:
        return cls(CrossEntropy(), config.mgr, config.batch_size)

    def start(self, setup: MethodSetup) -> None:
        super().start(setup)
        self.base.start(setup)
        generator = setup.generator
        if generator is None:
            raise ValueError("MGR needs a generator")
        if setup.meta_images is None or setup.meta_labels is None:
            raise ValueError("MGR needs a held-out meta-validation set B_val")
        if self.finder_conditional and not generator.conditional:
            raise ValueError("a class-conditioned finder needs a class-conditional generator")
        if self.lookahead == "adam" and not isinstance(setup.optimizer, torch.optim.Adam):
            raise ValueError("the Adam lookahead needs the classifier's Adam optimizer in the method setup")
        finder = ConditionalFinder(generator.channels, setup.n_classes) if self.finder_conditional else \
            Finder(generator.channels)
        self.finder_ = finder.to(generator.device)
        self.finder_optimizer_ = torch.optim.Adam(self.finder_.parameters(), lr=self.finder_lr)
        self.n_steps_ = 0
        self.val_before_: list[float] = []
        self.val_after_: list[float] = []
        self.val_after_random_: list[float] = []
        self.shift_: list[float] = []
        self.last_meta_: dict[str, torch.Tensor] = {}

    def synthesize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Draw ``u`` and classes, return ``(u, F_ω(u), x_p = G(F_ω(u), c), c)``; differentiable in ω."""
        generator, setup = self.setup_.generator, self.setup_
        shape = (self.synthetic_batch, generator.channels, generator.image_size, generator.image_size)
        u = randn(shape, setup.rng, generator.device)  # (S, C, H, W)
        classes = None
        if generator.conditional:
            classes = torch.randint(setup.n_classes, (self.synthetic_batch,), generator=setup.rng).to(generator.device)
        latents = self.finder_(u, classes) if self.finder_conditional else self.finder_(u)
        unet = generator.compiled_unet() if self.compile else None  # fixed shape (S, C, H, W): compiled once
        x_p = ddim_chain(generator, latents, classes, self.sampler_steps, self.backprop_steps, unet=unet)
        return u, latents, x_p.to(setup.device), classes

    def meta_step(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> Metrics:
        """MPS: lookahead θ' through the synthetic batch, then one Adam step of the finder on CE(B_val; θ')."""
        u, latents, x_p, classes = self.synthesize()
        setup = self.setup_
        augment_state = setup.rng.get_state()  # the PCR views' draws, replayed for the random-latent comparison

        def pcr(forward: Forward) -> torch.Tensor:
            augment_state.copy_(setup.rng.get_state())
            return pcr_per_sample(forward, x_p, setup.rng, self.pcr_reduction)  # (S,)

        meta = lookahead_validation(model, lambda forward: self.base.real_loss(forward, x, y)[0], pcr, self.weight,
                                    lr, setup.meta_images, setup.meta_labels, self.val_batch, setup.rng,
                                    step=self._lookahead)
        val_before, val_after, weights = meta.val_before, meta.val_after, meta.weights
        # under the Adam lookahead ∂L_val/∂w_i goes through the preconditioner: the alignment is computed directly
        influence = alignment_influence(meta) if self.lookahead == "adam" else None
        val_random = self._val_after_random(model, meta.params, meta.real, u, classes, augment_state, meta.x_val,
                                            meta.y_val, lr)
        finder_params = list(self.finder_.parameters())
        *finder_grads, weight_grad = torch.autograd.grad(val_after, [*finder_params, weights])
        for p, g in zip(finder_params, finder_grads):
            p.grad = g
        self.finder_optimizer_.step()
        finder_grad_norm = torch.sqrt(sum(g.pow(2).sum() for g in finder_grads)).item()
        if influence is None:  # SGD: ∂L_val(θ')/∂w_i = −(η/S) λ ∇L_val(θ')·∇ℓ_PCR,i(θ), rescaled to −λ ∇L_val·∇ℓ_PCR,i
            influence = weight_grad.detach() * x_p.shape[0] / lr
        shift = (latents - u).pow(2).mean().sqrt().item()
        self.val_before_.append(val_before.item())
        self.val_after_.append(val_after.item())
        self.shift_.append(shift)
        extra: Metrics = {}
        if val_random is not None:
            self.val_after_random_.append(val_random)
            extra = {"mgr_val_loss_after_random": val_random, "mgr_beats_random": float(val_after.item() < val_random)}
        self.last_meta_ = {"latents": torch.stack([u, latents]).detach(), "sample_images": x_p.detach(),
                           "sample_classes": classes if classes is not None else torch.full((x_p.shape[0],), -1),
                           "influence": influence}
        return {"mgr_val_loss_before": val_before.item(), "mgr_val_loss_after": val_after.item(),
                "mgr_val_gain": val_before.item() - val_after.item(), "finder_grad_norm": finder_grad_norm,
                "finder_shift": shift, **extra}

    def _lookahead(self, params: dict[str, torch.Tensor], loss: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
        if self.lookahead == "adam":
            return adam_lookahead(params, loss, lr, self.setup_.optimizer)
        return lookahead(params, loss, lr)

    def _val_after_random(self, model: ConvNet, params: dict[str, torch.Tensor], real: torch.Tensor, u: torch.Tensor,
                          classes: torch.Tensor | None, augment_state: torch.Tensor, x_val: torch.Tensor,
                          y_val: torch.Tensor, lr: float) -> float | None:
        """CE(B_val; θ'_random) after the same lookahead on ``G(u, c)`` — the random latents, same classes, same
        augmentations (a copy of the generator state) and real batch; None unless ``compare_random``."""
        if not self.compare_random:
            return None
        with torch.no_grad():
            x_r = ddim_chain(self.setup_.generator, u, classes, self.sampler_steps).to(self.setup_.device)
        rng = torch.Generator().set_state(augment_state)
        pcr = pcr_per_sample(functional_forward(model, params), x_r, rng, self.pcr_reduction).mean()
        params_after = self._lookahead(params, real + self.weight * pcr, lr)
        with torch.no_grad():
            return F.cross_entropy(functional_forward(model, params_after)(x_val)[1], y_val).item()

    def step_loss(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, Metrics]:
        """Meta step (every ``meta_period`` steps), then ``L_real + λ L_PCR`` on a fresh, detached synthetic batch."""
        metrics: Metrics = {}
        if self.n_steps_ % self.meta_period == 0:
            for _ in range(self.meta_steps):
                metrics.update(self.meta_step(model, x, y, lr))
        self.n_steps_ += 1
        with torch.no_grad():
            x_p = self.synthesize()[2]
        real, real_metrics = self.base.real_loss(module_forward(model), x, y)
        pcr = pcr_per_sample(functional_forward(model, model_params(model)), x_p, self.setup_.rng,
                             self.pcr_reduction).mean()
        metrics.update(real_metrics, pcr_loss=pcr.item())
        return real + self.weight * pcr, metrics

    def after_step(self) -> Metrics:
        return self.base.after_step()

    def epoch_snapshot(self) -> dict[str, torch.Tensor]:
        """The base method's tensors plus, from the epoch's last meta step, ``latents`` (2, S, C, H, W) =
        [u, F_ω(u)], ``sample_classes`` (S,) (−1 for an unconditional generator), ``sample_images``
        (S, C, H, W) and ``influence`` (S,) = ``−λ ∇CE(B_val; θ')·∇ℓ_PCR(x_i; θ)`` (negative: the sample
        lowers the validation loss), and the epoch's ``val_loss_before`` / ``val_loss_after`` / ``finder_shift``
        (RMS of F_ω(u) − u) (M,), one per meta step, with ``val_loss_after_random`` (M,) when ``compare_random``."""
        tensors = dict(self.last_meta_, val_loss_before=torch.tensor(self.val_before_),
                       val_loss_after=torch.tensor(self.val_after_), finder_shift=torch.tensor(self.shift_))
        if self.compare_random:
            tensors["val_loss_after_random"] = torch.tensor(self.val_after_random_)
        self.val_before_, self.val_after_, self.val_after_random_, self.shift_ = [], [], [], []
        snapshot = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        return {**self.base.epoch_snapshot(), **snapshot}


class MGRAdaRand(MGR):
    """MGR's regularizer on top of AdaRand's real-batch loss."""

    name = "mgr+adarand"
    note = "MGR and AdaRand together"

    @classmethod
    def from_config(cls, config: TrainConfig) -> MGRAdaRand:
        return cls(AdaRand.from_config(config), config.mgr, config.batch_size)

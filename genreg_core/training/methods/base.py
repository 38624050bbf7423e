"""What every training method shares: the step interface, the forward passes it runs, and feature diagnostics.

A method turns one real batch into the loss of one classifier step (``step_loss``), may update its own
state after the optimizer step (``after_step``: AdaRand's prior), and hands the training loop one dict of
tensors per epoch (``epoch_snapshot``). The loop (``genreg_core.training.loop``) owns the model, the optimizer,
the schedule, evaluation and callbacks; a method never sees the UI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from genreg_core.config import TrainConfig
from genreg_core.diffusion.model import Generator
from genreg_core.features.extractor import ConvNet

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # x (N, C, H, W) -> (g(x) (N, d), logits (N, K))
Metrics = dict[str, float]


@dataclass
class MethodSetup:
    """What a method may look at before training starts."""

    model: ConvNet  # the classifier being trained (its initial weights: scratch or pretrained backbone)
    images: torch.Tensor  # (N, C, H, W) the real images the classifier's CE sees, on ``device``
    labels: torch.Tensor  # (N,) their labels, on ``device``
    n_classes: int  # K
    device: torch.device  # where the model lives
    rng: torch.Generator  # CPU generator of every random draw of the method (seeded by the run)
    generator: Generator | None = None  # the frozen diffusion model (GDA, MGR)
    meta_images: torch.Tensor | None = None  # (M, C, H, W) MGR's held-out B_val, on ``device``
    meta_labels: torch.Tensor | None = None  # (M,) its labels
    total_steps: int | None = None  # classifier steps the run will take (schedules of a method's own optimizer)
    optimizer: torch.optim.Optimizer | None = None  # the classifier's optimizer (MGR's Adam lookahead reads it)


class Method:
    """Plain cross-entropy (the CE baseline); other methods override the hooks they need."""

    name = "ce"
    note = ""  # one line for pickers: what the method does, and its paper
    needs_generator = False  # train_classifier raises ValueError without a generator when True
    needs_meta_validation = False  # the loop holds out B_val from the training subset when True
    records_latents = False  # epoch snapshots hold random vs meta-selected latents (Meta-selected latents page)

    @classmethod
    def from_config(cls, config: TrainConfig) -> Method:
        """A fresh method with its options from ``config`` (the registry's constructor)."""
        return cls()

    def start(self, setup: MethodSetup) -> None:
        """Called once before the first step."""
        self.setup_ = setup

    def real_loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        """The loss on a real batch as a function of the classifier (``forward``); CE here."""
        features, logits = forward(x)
        ce = F.cross_entropy(logits, y)
        return ce, {"ce_loss": ce.item(), **feature_diagnostics(features)}

    def step_loss(self, model: ConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, Metrics]:
        """The loss the classifier step minimises; ``lr`` is the classifier's current learning rate."""
        return self.real_loss(module_forward(model), x, y)

    def after_step(self) -> Metrics:
        """Called after the classifier's optimizer step."""
        return {}

    def epoch_snapshot(self) -> dict[str, torch.Tensor]:
        """Tensors recorded at the end of an epoch (contiguous, on CPU); starts the next epoch's record."""
        return {}


def module_forward(model: ConvNet) -> Forward:
    """``x -> (g(x), h(g(x)))`` through the module itself (BatchNorm running statistics update in train mode)."""

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = model.features(x)
        return features, model.head(features)

    return forward


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def functional_forward(model: ConvNet, params: dict[str, torch.Tensor]) -> Forward:
    """``x -> (g(x), h(g(x)))`` with the parameters ``params`` (``torch.func.functional_call``).

    BatchNorm uses batch statistics (the model must be in train mode) on copies of the running buffers, so
    the module's own running statistics never move: lookaheads and synthetic batches leave no trace in them.
    """
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    backbone = _prefixed({**params, **buffers}, "backbone.")
    head = _prefixed(params, "head.")

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = functional_call(model.backbone, backbone, (x,))  # (N, d)
        return features, functional_call(model.head, head, (features,))

    return forward


def model_params(model: ConvNet) -> dict[str, torch.Tensor]:
    """The model's parameters by name (the tensors themselves, gradients flow into them)."""
    return dict(model.named_parameters())


def batch_features(model: ConvNet, x: torch.Tensor) -> torch.Tensor:
    """``g(x)`` with BatchNorm batch statistics (the features the regularizers act on), no gradient, no side effect."""
    was_training = model.training
    model.train()
    with torch.no_grad():
        features = functional_forward(model, model_params(model))(x)[0]
    model.train(was_training)
    return features


def feature_diagnostics(features: torch.Tensor) -> Metrics:
    """Mean feature norm ``mean_i ‖g(x_i)‖`` and a feature-entropy estimate of the batch.

    The entropy is that of a diagonal Gaussian fitted to the batch, in nats per feature dimension:
    ``mean_j ½ log(2πe·Var_i g_j(x_i))`` (AdaRand, CVPR 2024, relates RandReg's weakness to low feature
    norm and entropy).
    """
    f = features.detach().float()  # (N, d)
    norm = f.norm(dim=1).mean().item()
    if f.shape[0] < 2:
        return {"feature_norm": norm}
    var = f.var(dim=0).clamp(min=1e-12)  # (d,)
    entropy = (0.5 * torch.log(2 * math.pi * math.e * var)).mean().item()
    return {"feature_norm": norm, "feature_entropy": entropy}


def randn(shape: tuple[int, ...], rng: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn from the method's CPU generator, moved to ``device``."""
    return torch.randn(shape, generator=rng).to(device)

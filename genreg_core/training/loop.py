"""One training loop for the small CNN classifier, with pluggable methods and callbacks.

The protocol of docs/algorithms.md (experimental protocol): ``per_class`` images per class drawn from the
split's train set, the split's val set for model selection and its test set for the reported number —
the test accuracy at the epoch of lowest validation loss. Every method (``genreg_core.training.methods``) trains
the same ``ConvNet`` (the feature extractor's architecture) with the same optimizer and schedule: Adam
with a cosine-decayed learning rate. ``config.init`` picks the backbone's starting weights: random
("scratch") or the self-supervised backbone of the unlabelled training pool ("pretrained",
``genreg_core.features.backbone``; the head is always fresh), so every method can be run as fine-tuning. The
loop knows nothing about any UI: it reports through :class:`TrainCallbacks`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genreg_core.config import META_VAL_BUDGETS, FeatureConfig, TrainConfig
from genreg_core.data.datasets import ImageDataset, Split, per_class_subset, scoring_set
from genreg_core.device import resolve_device
from genreg_core.diffusion.model import Generator
from genreg_core.distributed import Parallel
from genreg_core.features.augment import random_shift_rotate
from genreg_core.features.backbone import get_backbone, load_into
from genreg_core.features.extractor import ConvNet, build_convnet
from genreg_core.lab import check_compatible
from genreg_core.paths import genreg_home
from genreg_core.training.methods import Method, MethodSetup, make_method

__all__ = ["TrainCallbacks", "TrainConfig", "TrainResult", "build_classifier", "eval_batch_size", "evaluate",
           "extra_meta_validation", "split_meta_validation", "train_classifier"]


@dataclass
class TrainCallbacks:
    """Optional hooks; each is called from the training thread."""

    on_step: Callable[[int, dict[str, float]], None] | None = None  # (global step from 1, step metrics)
    on_epoch: Callable[[int, dict[str, float]], None] | None = None  # (epoch from 1, epoch metrics)
    on_snapshot: Callable[[int, dict[str, torch.Tensor]], None] | None = None  # (epoch, contiguous CPU tensors)
    should_stop: Callable[[], bool] | None = None  # checked before every step; True ends the run as "stopped"


@dataclass
class TrainResult:
    """What a run leaves behind."""

    status: Literal["finished", "stopped"]  # "stopped" when should_stop ended it early
    history: list[dict[str, float]]  # one metrics dict per completed epoch
    best_epoch: int | None  # epoch (from 1) of the lowest validation loss; None if no epoch completed
    best_val_loss: float | None  # that validation loss
    test_accuracy: float | None  # test accuracy at best_epoch (the number to report)
    state_dict: dict[str, torch.Tensor]  # the best validation-loss epoch's classifier weights, on CPU
    config: TrainConfig  # the run's config
    train_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # dataset rows CE trained on
    meta_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # dataset rows of MGR's B_val
    seconds: float = 0.0  # wall time of the run


def split_meta_validation(labels: torch.Tensor | np.ndarray, indices: np.ndarray, fraction: float,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(fraction · n_k)`` images of each class (at least 1, at most n_k − 1) as MGR's B_val.

    Returns ``(train, meta)`` index arrays; raises ``ValueError`` when a class has fewer than 2 images.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"meta-validation fraction must lie in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    indices = np.asarray(indices)
    rng = np.random.default_rng([seed, 1])
    train, meta = [], []
    for cls in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == cls])
        if len(members) < 2:
            raise ValueError(f"MGR holds out at least one meta-validation image per class, but class {cls} "
                             f"has only {len(members)} training image; use per_class ≥ 2")
        n_meta = min(len(members) - 1, max(1, round(fraction * len(members))))
        meta.append(members[:n_meta])
        train.append(members[n_meta:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(meta))


def extra_meta_validation(labels: torch.Tensor | np.ndarray, pool: np.ndarray, train: np.ndarray, fraction: float,
                          seed: int = 0) -> np.ndarray:
    """B_val drawn *in addition* to ``train`` from the rest of ``pool`` (the train split): as many images per class as
    :func:`split_meta_validation` would hold out of ``train`` (``round(fraction · n_k)``, at least 1), none of
    ``train``. ``ValueError`` when a class has too few images left."""
    if not 0 < fraction < 1:
        raise ValueError(f"meta-validation fraction must lie in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rest = np.setdiff1d(np.asarray(pool), np.asarray(train))
    rng = np.random.default_rng([seed, 2])
    meta = []
    for cls in np.unique(labels[train]):
        n_k = int((labels[train] == cls).sum())
        members = rest[labels[rest] == cls]
        n_meta = max(1, round(fraction * n_k))
        if len(members) < n_meta:
            raise ValueError(f"class {cls} has only {len(members)} training images outside the subset, fewer than the "
                             f"{n_meta} extra meta-validation images meta_val_budget='extra' needs")
        meta.append(rng.choice(members, size=n_meta, replace=False))
    return np.sort(np.concatenate(meta))


def eval_batch_size(device: torch.device) -> int:
    """Images per evaluation batch: 128 on CPU (it stays in cache: faster than 512, see bench/bench_fashion.py),
    512 on an accelerator."""
    return 128 if device.type == "cpu" else 512


def evaluate(model: ConvNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None,
             parallel: Parallel | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode on ``images`` (N, C, H, W), ``batch_size``
    images at a time (default: :func:`eval_batch_size`).

    With an accelerator in ``parallel`` each process evaluates its share of the batches and the logits are
    gathered (``gather_for_metrics``, which drops the samples Accelerate repeats to even out the last batch), so
    every process returns the numbers of the whole set.
    """
    if parallel is not None and parallel.accelerator is not None:
        loader = _eval_loader(parallel, images, labels, batch_size or eval_batch_size(parallel.accelerator.device))
        return _evaluate_gathered(model, loader, parallel)
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(device)
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, labels.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device)
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    n = max(1, labels.shape[0])
    return loss / n, correct / n


def _eval_loader(parallel: Parallel, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    """A DataLoader of ``(images, labels)`` prepared by the accelerator: this process's batches, on its device."""
    from torch.utils.data import DataLoader, TensorDataset

    return parallel.accelerator.prepare_data_loader(DataLoader(TensorDataset(images, labels), batch_size=batch_size))


def _evaluate_gathered(model: ConvNet, loader, parallel: Parallel) -> tuple[float, float]:
    """:func:`evaluate` over an accelerator's prepared ``loader``; one process gives the plain numbers exactly."""
    was_training = model.training
    model.eval()
    loss, correct, n = 0.0, 0, 0
    with torch.inference_mode():
        for x, y in loader:
            logits, y = parallel.accelerator.gather_for_metrics((model(x), y))  # (B, K), (B,) over all processes
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            n += y.shape[0]
    model.train(was_training)
    return loss / max(1, n), correct / max(1, n)


def check_train_config(config: TrainConfig) -> None:
    """``ValueError`` for a run config that cannot train (checked before a run is recorded or started)."""
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {config.epochs} and {config.batch_size}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {config.lr}")
    if not 0 <= config.seed < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32 - 1], got {config.seed}")
    if config.per_class is not None and config.per_class < 1:
        raise ValueError(f"per_class must be at least 1 (or None for all), got {config.per_class}")
    numbers = {"weight_decay": config.weight_decay, "gda.ratio": config.gda.ratio,
               "randreg.weight": config.randreg.weight,
               "adarand.prior_lr": config.adarand.prior_lr, "mgr.weight": config.mgr.weight,
               "mgr.finder_lr": config.mgr.finder_lr}
    for name, value in numbers.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number ≥ 0, got {value}")
    if config.meta_val_budget not in META_VAL_BUDGETS:
        raise ValueError(f"unknown meta_val_budget {config.meta_val_budget!r} (known: {', '.join(META_VAL_BUDGETS)})")
    if config.init not in ("scratch", "pretrained"):
        raise ValueError(f"unknown init {config.init!r} (known: scratch, pretrained)")


def build_classifier(dataset: ImageDataset, split: Split, config: TrainConfig,
                     device: torch.device) -> ConvNet:
    """The ConvNet a run starts from: seeded random weights, with the pretrained backbone for ``init="pretrained"``.

    The head is initialised from ``config.seed`` either way. The pretrained backbone saw the split's
    training pool without labels (the shipped digits one, or one pretrained once and cached).
    """
    backbone = None
    if config.init == "pretrained":  # fetched first: pretraining on a cache miss reseeds torch
        backbone = get_backbone(dataset, split, config.width, config.feature_dim,
                                genreg_home() / "cache" / "backbones", device=device)
    torch.manual_seed(config.seed)
    model = build_convnet(FeatureConfig(width=config.width, feature_dim=config.feature_dim), dataset.channels,
                          dataset.n_classes)
    if backbone is not None:
        load_into(model, backbone)
    return model.to(device).train()


def _cosine_lr(step: int, total: int, peak: float) -> float:
    """``peak · ½(1 + cos(π step / total))``, positive for every step < total."""
    return peak * 0.5 * (1 + math.cos(math.pi * step / total))


def _head_grad_norm(model: ConvNet) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.head.parameters() if p.grad is not None))


def _mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over the steps that reported the key."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            sums.setdefault(key, []).append(value)
    return {key: float(np.mean(values)) for key, values in sums.items()}


@dataclass
class _Run:
    """The state the epoch loop threads through: model, optimizer, method and data on the device."""

    model: ConvNet
    optimizer: torch.optim.Optimizer
    method: Method
    images: torch.Tensor  # (N, C, H, W) the real images CE trains on
    labels: torch.Tensor  # (N,)
    rng: torch.Generator
    config: TrainConfig
    callbacks: TrainCallbacks
    total_steps: int
    step: int = 0
    parallel: Parallel = field(default_factory=Parallel)  # one process (plain torch) or several (Accelerate)


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """One classifier step of the method; raises ``FloatingPointError`` on a non-finite loss."""
    lr = _cosine_lr(run.step, run.total_steps, run.config.lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    n_local = y.shape[0]  # 0 on a process whose slice of a short last batch is empty
    loss, metrics = run.method.step_loss(run.model, x, y, lr) if n_local else (None, {})
    value = run.parallel.sample_mean(loss.item() if n_local else 0.0, n_local)
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite loss {value} at step {run.step + 1} of method {run.method.name!r}")
    run.optimizer.zero_grad(set_to_none=True)
    if n_local:
        loss.backward()
    run.parallel.average_gradients(list(run.model.parameters()), n_local)
    head_grad_norm = _head_grad_norm(run.model)
    run.optimizer.step()
    if n_local:
        metrics.update(run.method.after_step())
    run.step += 1
    return {"train_loss": value, **metrics, "head_grad_norm": head_grad_norm, "lr": lr}


def _train_epoch(run: _Run, epoch: int) -> list[dict[str, float]] | None:
    """One pass over the shuffled training set; ``None`` when should_stop asked to stop."""
    rows = []
    run.parallel.sync_rng(run.rng)  # every process draws the main process's order
    order = torch.randperm(run.labels.shape[0], generator=run.rng).to(run.labels.device)
    for start in range(0, order.shape[0], run.config.batch_size):
        if run.parallel.any(run.callbacks.should_stop is not None and run.callbacks.should_stop()):
            return None
        batch = order[start:start + run.config.batch_size]
        x, y = run.images[batch], run.labels[batch]
        if run.config.augment:
            x = random_shift_rotate(x, rng=run.rng)
        x, y = run.parallel.shard(x), run.parallel.shard(y)  # this process's slice of the batch
        row = {**_train_step(run, x, y), "epoch": float(epoch)}
        rows.append(row)
        if run.callbacks.on_step is not None:
            run.callbacks.on_step(run.step, row)
    return rows


def _prepare_data(dataset: ImageDataset, split: Split, config: TrainConfig,
                  method: Method) -> tuple[np.ndarray, np.ndarray]:
    """The per-class training subset and, for MGR, the meta-validation rows held out of it."""
    if len(split.val) == 0 or len(split.test) == 0:
        raise ValueError("the split needs non-empty val and test sets")
    train = per_class_subset(dataset.labels, split.train, config.per_class, config.seed)
    if not method.needs_meta_validation:
        return train, np.zeros(0, np.int64)
    if config.meta_val_budget == "extra":
        return train, extra_meta_validation(dataset.labels, split.train, train, config.meta_val_fraction, config.seed)
    return split_meta_validation(dataset.labels, train, config.meta_val_fraction, config.seed)


def _start(dataset: ImageDataset, split: Split, config: TrainConfig, generator: Generator | None,
           device: torch.device, callbacks: TrainCallbacks,
           parallel: Parallel) -> tuple[_Run, np.ndarray, np.ndarray]:
    method = make_method(config.method, config)
    if method.needs_generator:
        if generator is None:
            raise ValueError(f"method {config.method!r} needs a generator")
        check_compatible(generator, dataset)
    train_idx, meta_idx = _prepare_data(dataset, split, config, method)
    model = build_classifier(dataset, split, config, device)
    rng = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    images, labels = dataset.images[train_idx].to(device), dataset.labels[train_idx].to(device)
    meta = (dataset.images[meta_idx].to(device), dataset.labels[meta_idx].to(device)) if len(meta_idx) else (None, None)
    total_steps = config.epochs * math.ceil(len(train_idx) / config.batch_size)
    method.start(MethodSetup(model, images, labels, dataset.n_classes, device, rng, generator, *meta, total_steps,
                             optimizer))
    run = _Run(model, optimizer, method, images, labels, rng, config, callbacks, total_steps, parallel=parallel)
    return run, train_idx, meta_idx


def _evaluate_on(run: _Run, images, labels: torch.Tensor) -> tuple[float, float]:
    """:func:`evaluate` on tensors, or gathered over a prepared loader (``images``) under an accelerator."""
    if run.parallel.accelerator is None:
        return evaluate(run.model, images, labels)
    return _evaluate_gathered(run.model, images, run.parallel)


def train_classifier(dataset: ImageDataset, split: Split, config: TrainConfig, generator: Generator | None = None,
                     device: torch.device | str = "cpu", callbacks: TrainCallbacks | None = None,
                     parallel: Parallel | None = None) -> TrainResult:
    """Train a ConvNet (``config.init``) with ``config.method`` and report the test accuracy at the best val-loss epoch.

    The test set is :func:`scoring_set`'s: the dataset's fixed held-out test set when it has one, else the split's.

    Each epoch's metrics hold ``train_loss`` (mean over its steps) and the means of the method's step
    diagnostics, ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``. The test set is read once, after training
    (finished or stopped), by the weights of the best validation-loss epoch: that epoch's row alone gains
    ``test_loss`` and ``test_accuracy``, and those weights are the returned ``state_dict``.
    Raises ``ValueError`` for an unknown method, a missing or incompatible generator, or a bad config, and
    ``FloatingPointError`` when a loss is not finite.

    ``parallel`` (``genreg_core.distributed``) with several processes trains data-parallel: each process takes
    its slice of every batch, the classifier's gradients are averaged explicitly (not by DDP: the methods call
    the model's parts and ``torch.func.functional_call`` on its parameters, which DDP's forward hooks do not
    see), evaluation is gathered, and every process returns the same result. A method's own state (MGR's
    latents, AdaRand's references) is per process, from its slice. Callbacks belong to the main process.
    """
    started = time.perf_counter()
    callbacks = callbacks or TrainCallbacks()
    check_train_config(config)
    parallel = parallel or Parallel()
    device = parallel.device(resolve_device(device) if isinstance(device, str) else device)
    run, train_idx, meta_idx = _start(dataset, split, config, generator, device, callbacks, parallel)
    val_x, val_y = dataset.images[split.val], dataset.labels[split.val]
    test_x, test_y, _ = scoring_set(dataset, split)
    if parallel.accelerator is not None:  # prepared once: each process evaluates its batches, gathered
        batch = eval_batch_size(device)
        val_x, test_x = _eval_loader(parallel, val_x, val_y, batch), _eval_loader(parallel, test_x, test_y, batch)
    history: list[dict[str, float]] = []
    status: Literal["finished", "stopped"] = "finished"
    best, best_state = -1, None
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        rows = _train_epoch(run, epoch)
        if rows is None:
            status = "stopped"
            break
        parallel.broadcast_buffers(run.model)  # one model on every process for evaluation
        val_loss, val_accuracy = _evaluate_on(run, val_x, val_y)
        row = {**_mean_metrics(rows), "epoch": float(epoch), "val_loss": val_loss, "val_accuracy": val_accuracy}
        if best < 0 or val_loss < history[best]["val_loss"]:
            best, best_state = len(history), _cpu_state(run.model)
        row["seconds"] = time.perf_counter() - epoch_start
        history.append(row)
        if callbacks.on_epoch is not None:
            callbacks.on_epoch(epoch, row)
        snapshot = run.method.epoch_snapshot()
        if callbacks.on_snapshot is not None:
            callbacks.on_snapshot(epoch, snapshot)
    found = best >= 0
    if found:  # the one read of the test set: the best validation-loss weights, the classifier reported and saved
        run.model.load_state_dict(best_state)
        history[best]["test_loss"], history[best]["test_accuracy"] = _evaluate_on(run, test_x, test_y)
    state = best_state if found else _cpu_state(run.model)
    return TrainResult(status, history, best + 1 if found else None, history[best]["val_loss"] if found else None,
                       history[best]["test_accuracy"] if found else None, state, config, train_idx, meta_idx,
                       time.perf_counter() - started)


def _cpu_state(model: ConvNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

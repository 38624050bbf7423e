"""Several processes for one job through HF Accelerate, and a no-op in one process.

``accelerate launch --multi_gpu --num_processes N -m genreg_core train-generator|train ...`` starts N copies of the
same command; each finds ``WORLD_SIZE`` > 1 in its environment and :func:`parallel_context` gives it an
``accelerate.Accelerator``. Without a launcher (``WORLD_SIZE`` unset or 1) it gives :class:`Parallel` with no
accelerator, whose every method returns its input: the single-process code path is the plain torch one, so CPU
results stay those of the code before Accelerate (bit for bit).

Data parallelism here keeps the *global* batch of the single-process run: every process draws the same batch
from the same seeded stream and trains on its slice (:meth:`Parallel.shard`); gradients are averaged over the
processes, weighted by their slice sizes, so one step sees the gradient of the whole batch (BatchNorm's batch
statistics excepted: they are those of each slice). Accelerate is optional (``pip install 'genreg[accelerate]'``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

ACCELERATE_MISSING = ("several processes for one job need HF Accelerate, which is not installed: "
                      "pip install 'genreg[accelerate]' (tested: accelerate==1.15.0)")


def import_accelerate():
    """The ``accelerate`` module, or ``ValueError`` with one clear line when it is not installed."""
    try:
        import accelerate
    except ImportError:
        raise ValueError(ACCELERATE_MISSING) from None
    return accelerate


def launched_processes() -> int:
    """How many processes a launcher (``accelerate launch``, ``torchrun``) started for this job; 1 without one."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Parallel:
    """The processes of one job: one (``accelerator`` None: plain torch) or several (an ``accelerate.Accelerator``)."""

    accelerator: Any = None  # accelerate.Accelerator, or None for the plain single-process path

    @property
    def num_processes(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    @property
    def distributed(self) -> bool:
        """True when gradients and metrics must be shared with other processes."""
        return self.num_processes > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, run-store records and progress bars."""
        return self.accelerator is None or self.accelerator.is_main_process

    def device(self, default: torch.device) -> torch.device:
        """This process's device: the accelerator's (``cuda:LOCAL_RANK`` under a GPU launch), else ``default``."""
        return default if self.accelerator is None else self.accelerator.device

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """``(model, optimizer)`` prepared by Accelerate (DDP and device placement over several processes)."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm_(self, parameters, max_norm: float) -> None:
        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        else:
            self.accelerator.clip_grad_norm_(parameters, max_norm)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's slice of a batch drawn alike by every process (slices differ in size by at most one)."""
        if not self.distributed:
            return batch
        return torch.tensor_split(batch, self.num_processes)[self.accelerator.process_index]

    def sample_mean(self, value: float, n_local: int) -> float:
        """The mean over every process's samples of a per-process mean ``value`` over ``n_local`` samples."""
        if not self.distributed:
            return value
        device = self.accelerator.device
        totals = self.accelerator.reduce(torch.tensor([value * n_local, float(n_local)], dtype=torch.float64,
                                                      device=device), "sum")
        return float(totals[0] / totals[1])

    def average_gradients(self, parameters: list[torch.nn.Parameter], n_local: int) -> None:
        """Replace each gradient by the sample-weighted mean over processes (a process with no samples adds zero)."""
        if not self.distributed:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1).double() * n_local for g in grads] +
                         [torch.tensor([float(n_local)], dtype=torch.float64, device=grads[0].device)])  # (P + 1,)
        flat = self.accelerator.reduce(flat, "sum")
        flat = flat[:-1] / flat[-1]
        for p, g in zip(parameters, torch.split(flat, [g.numel() for g in grads])):
            p.grad = g.view_as(p).to(p.dtype)

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on one of them (a stop request seen by the main process)."""
        if not self.distributed:
            return flag
        return bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.accelerator.device), "sum") > 0)

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Give every process the main process's buffers (BatchNorm's running statistics, which each process
        updates from its own slice), as DDP does: evaluation then sees one model on every process."""
        if not self.distributed:
            return
        from accelerate.utils import broadcast

        for buffer in model.buffers():
            buffer.copy_(broadcast(buffer.detach().clone(), from_process=0))

    def sync_rng(self, rng: torch.Generator) -> None:
        """Give ``rng`` the main process's state, so every process draws the same batches from here on."""
        if not self.distributed:
            return
        from accelerate.utils import broadcast

        state = rng.get_state().to(self.accelerator.device)  # (S,) uint8
        rng.set_state(broadcast(state, from_process=0).cpu())

    def wait(self) -> None:
        """Block until every process has reached this point."""
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


def parallel_context(device: torch.device | str = "cpu", force: bool = False) -> Parallel:
    """An Accelerator when launched with several processes (or ``force``), else the plain single-process path.

    ``device`` "cpu" keeps a launched job on the CPU (gloo); otherwise Accelerate gives each process its GPU.
    """
    if not force and launched_processes() <= 1:
        return Parallel()
    accelerate = import_accelerate()
    return Parallel(accelerate.Accelerator(cpu=torch.device(device).type == "cpu", mixed_precision="no"))

"""Device resolution, done once per entry point, and seeded random streams on a device."""

from __future__ import annotations

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a torch device, with a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r} (use auto, cpu or cuda)")


def seeded_rng(seed: int, device: torch.device) -> torch.Generator:
    """A seeded random stream on the CUDA device itself there, the CPU generator elsewhere.

    On the CPU this is the stream the code always used, so CPU results do not depend on the device code;
    on CUDA the same seed gives the same result run to run, but not the CPU's (another stream).
    """
    if torch.device(device).type == "cuda":
        return torch.Generator(device=device).manual_seed(seed)
    return torch.Generator().manual_seed(seed)

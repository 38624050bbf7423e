"""Device resolution, done once per entry point."""

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

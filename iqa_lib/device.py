"""Pick the compute device: CUDA (this rank's GPU under torchrun), else MPS, else CPU."""

from __future__ import annotations

import os

import torch

from iqa_lib.checks import DEVICE_CHOICES, check_device  # noqa: F401 (re-exported)

_INSTEAD = "choose a device this machine has (--device, or scoring.device in params.yaml): auto picks one"


def pick_device(requested: torch.device | str | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA, then MPS, then CPU; anything else must be a kit device name
    this machine has (commands call it before scanning any image, so a missing GPU costs no scan)."""
    if requested is not None and str(requested) != "auto":
        return _available(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _available(requested: torch.device | str) -> torch.device:
    """The kit device named by ``requested``, if this machine has it; else a one-line RuntimeError."""
    device = torch.device(check_device(requested))
    if device.type == "cuda":
        _check_cuda(device, requested)
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(f"device {str(requested)!r} requested but MPS is not available; {_INSTEAD}")
    return device


def _check_cuda(device: torch.device, requested: torch.device | str) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {str(requested)!r} requested but CUDA is not available; {_INSTEAD}")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(
            f"device {str(requested)!r} requested but only {torch.cuda.device_count()} CUDA "
            f"device(s) are visible (cuda:0 ...); {_INSTEAD}"
        )

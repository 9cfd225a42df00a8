"""Device selection and numeric precision."""

from __future__ import annotations

import contextlib

import torch

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = tuple(_AUTOCAST_DTYPES)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; anything else is passed to torch.device."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_precision(precision: str) -> None:
    """Raises ValueError unless `precision` is 'fp32', 'bf16' or 'fp16'."""
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(_AUTOCAST_DTYPES)}, not {precision!r}")


def precision_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a predictor's `precision` on `device` (none for 'fp32')."""
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

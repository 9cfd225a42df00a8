"""A restoration network of one task, with or without its SAM prior, and its checkpoint format."""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from torch import nn

from core.errors import InputError
from core.io import atomic_path
from core.io import load_torch_file

from .nafnet import MapPriorNAFNet, NAFNet
from .unet import PriorUNet

CHECKPOINT_FORMAT = "robustsam-restorer"
_LUMA = (0.299, 0.587, 0.114)


def gray_labels(gray: torch.Tensor) -> torch.Tensor:
    """(B, H, W) gray-coded maps -> (B, H, W) int64 segment labels 0..M_b-1 per image, one per gray value."""
    batch = gray.shape[0]
    keyed = gray.long() + 256 * torch.arange(batch, device=gray.device)[:, None, None]
    values, inverse = torch.unique(keyed, return_inverse=True)
    first = torch.searchsorted(values, 256 * torch.arange(batch, device=gray.device))
    return inverse - first[:, None, None]


class Restorer(nn.Module):
    """forward(image (B, 3, H, W) in [0, 1], gray (B, H, W) uint8 gray-coded maps or None) -> (B, 3, H, W).

    dehaze: PriorUNet; its extra channel is gray / 255 with the prior, a grayscale copy of the image
    without (the dehazing work's baseline). deblur: MapPriorNAFNet over the gray map's segment
    partition with the prior, plain NAFNet without.
    """

    def __init__(self, task: str, use_prior: bool = True, **network: Any) -> None:
        super().__init__()
        self.task, self.use_prior, self.network_config = task, use_prior, dict(network)
        if task == "dehaze":
            self.network: nn.Module = PriorUNet(**network)
        elif task == "deblur":
            self.network = MapPriorNAFNet(**network) if use_prior else NAFNet(**network)
        else:
            raise ValueError(f"unknown restoration task {task!r}")

    def forward(self, image: torch.Tensor, gray: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.use_prior and gray is None:
            raise ValueError("this network needs the gray-coded prior map")
        if self.task == "dehaze":
            if self.use_prior:
                channel = gray.to(image.dtype)[:, None] / 255.0
            else:
                channel = sum(w * image[:, i : i + 1] for i, w in enumerate(_LUMA))
            return self.network(image, channel)
        if self.use_prior:
            return self.network(image, gray_labels(gray))
        return self.network(image)


def save_restorer(path: str | os.PathLike, restorer: Restorer, **extra: Any) -> None:
    """Writes the network atomically as a weights_only-loadable dict; `extra` holds numbers/strings."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "task": restorer.task,
        "use_prior": restorer.use_prior,
        "network": restorer.network_config,
        "state_dict": {k: v.detach().cpu() for k, v in restorer.state_dict().items()},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_restorer(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Restorer, dict[str, Any]]:
    """Reads a network written by save_restorer -> (Restorer in eval mode, the checkpoint's other fields)."""
    state = load_torch_file(path, "network file", "readable network file")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a network written by `robustsam restore train`")
    restorer = Restorer(state["task"], state["use_prior"], **state["network"])
    try:
        restorer.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise InputError(f"{path}: weights do not fit the network ({str(error).splitlines()[0]})") from None
    extra = {k: v for k, v in state.items() if k not in ("state_dict", "network", "format")}
    return restorer.to(device).eval(), extra

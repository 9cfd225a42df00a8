"""`build_robustsam`: the one entry point that makes a ready model."""

from __future__ import annotations

import os
from typing import Optional

import torch

from .checkpoint import resolve_weights
from .config import get_config
from ..device import resolve_device
from .robustsam import RobustSam


def build_robustsam(
    model_type: Optional[str] = "vit_b",
    checkpoint: Optional[str | os.PathLike] = None,
    *,
    sam_checkpoint: Optional[str | os.PathLike] = None,
    device: str | torch.device = "cpu",
) -> RobustSam:
    """RobustSAM of `model_type` (None: inferred from the checkpoint), in eval mode on `device`.

    `checkpoint` is a released RobustSAM checkpoint, a plain SAM checkpoint (the robust modules
    then start untrained, with a warning), or a robust-modules-only checkpoint on top of
    `sam_checkpoint`. Raises CheckpointError naming the file and keys when they do not fit.
    """
    weights = resolve_weights(checkpoint, sam_checkpoint, model_type)
    model = RobustSam(get_config(weights.model_type), weights.model_type)
    if weights.state_dict is not None:
        model.load_state_dict(weights.state_dict, strict=weights.has_robust)
    return model.to(resolve_device(device)).eval()

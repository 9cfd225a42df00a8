"""Opening any checkpoint as a model and a predictor: the one place that decides which method runs.

    predictor = open_predictor("robustsam_vit_b.pth")     # RobustPredictor, robust path
    predictor = open_predictor("glesam/final.pth")        # GleSamPredictor: the file says it is GleSAM

A RobustSAM or SAM state dict (`.pth`, `.safetensors`, robust modules over `sam_checkpoint`) gives a
`RobustSam` and a `RobustPredictor`; a GleSAM checkpoint (`core.model.checkpoint.is_glesam_checkpoint`)
gives a `GleSam` and a `GleSamPredictor`. Every command that runs a model opens it here, so none needs
a `--method` flag at inference. Files are read with the project's safe reader (weights_only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from ..device import resolve_device
from ..errors import CheckpointError
from ..model.build import build_robustsam
from ..model.checkpoint import SAFETENSORS_SUFFIX, is_glesam_checkpoint, load_torch_file
from ..model.robustsam import RobustSam
from .glesam_predictor import GleSamPredictor
from .predictor import RobustPredictor

if TYPE_CHECKING:
    from ..glesam import GleSam

GLESAM_EXTRA = "pip install 'robustsam[glesam]'"


def _peek(path: Path) -> Optional[Any]:
    """The content of a torch checkpoint, memory-mapped (tensors stay on disk); None for a safetensors
    file or anything the RobustSAM reader should judge (and report) itself."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX or not path.is_file():
        return None
    try:
        return load_torch_file(path, mmap=True)
    except CheckpointError:  # e.g. a legacy (non-zip) file, which cannot be memory-mapped
        return None


def checkpoint_method(checkpoint: str | os.PathLike) -> str:
    """'glesam' for a GleSAM checkpoint, else 'robustsam' (RobustSAM or SAM weights, or a file the
    RobustSAM reader will judge)."""
    return "glesam" if is_glesam_checkpoint(_peek(Path(checkpoint))) else "robustsam"


def open_model(checkpoint: str | os.PathLike, *, sam_checkpoint: Optional[str | os.PathLike] = None,
               model_type: Optional[str] = None, device: str | torch.device = "cpu") -> Union[RobustSam, "GleSam"]:
    """The model in `checkpoint`, in eval mode on `device` ('auto' allowed): a GleSam for a GleSAM checkpoint, else
    `build_robustsam(model_type, checkpoint, sam_checkpoint=...)`. CheckpointError naming the file for
    anything that does not fit (a GleSAM checkpoint carries its own SAM: no `sam_checkpoint`)."""
    path = Path(checkpoint)
    content = _peek(path)
    if not is_glesam_checkpoint(content):
        return build_robustsam(model_type, path, sam_checkpoint=sam_checkpoint, device=device)
    if sam_checkpoint is not None:
        raise CheckpointError(f"{path}: a GleSAM checkpoint carries its own SAM weights; leave out the SAM checkpoint")
    try:
        from ..glesam import glesam_from_content
    except ImportError:
        raise CheckpointError(f"{path}: a GleSAM checkpoint; running it needs diffusers and peft: {GLESAM_EXTRA}") from None
    model = glesam_from_content(content, path, device=resolve_device(device))
    if model_type is not None and model_type != model.sam.model_type:
        raise CheckpointError(f"{path}: a GleSAM checkpoint on {model.sam.model_type}, not {model_type}")
    return model


def make_predictor(model: Union[RobustSam, "GleSam"], *, robust: bool = True, precision: str = "fp32") -> RobustPredictor:
    """The predictor of a model `open_model` returned: GleSamPredictor for a GleSam (which has one path;
    `robust` is then ignored), else RobustPredictor on the robust path or, with `robust=False`, SAM's."""
    if isinstance(model, RobustSam):
        return RobustPredictor(model, robust=robust, precision=precision)
    return GleSamPredictor(model, precision=precision)


def open_predictor(checkpoint: str | os.PathLike, *, sam_checkpoint: Optional[str | os.PathLike] = None,
                   model_type: Optional[str] = None, robust: bool = True, precision: str = "fp32",
                   device: str | torch.device = "cpu") -> RobustPredictor:
    """`make_predictor(open_model(checkpoint, ...), robust=robust, precision=precision)`."""
    model = open_model(checkpoint, sam_checkpoint=sam_checkpoint, model_type=model_type, device=device)
    return make_predictor(model, robust=robust, precision=precision)

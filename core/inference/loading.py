"""Opening any checkpoint as a model and a predictor: the one place that decides which method runs.

    predictor = open_predictor("robustsam_vit_b.pth")     # RobustPredictor, robust path
    predictor = open_predictor("glesam/final.pth")        # GleSamPredictor: the file says it is GleSAM

A RobustSAM or SAM state dict (`.pth`, `.safetensors`, robust modules over `sam_checkpoint`) gives a
`RobustSam` and a `RobustPredictor`; a SAM 2 / 2.1 state dict (Meta's `sam2.1_hiera_*.pt`, or a RobustSAM2
checkpoint; `sam_mask_decoder.*` keys) or a SAM 2 model type gives a `RobustSam2` and a `Sam2Predictor`
(the `sam2` extra); a GleSAM checkpoint (`core.model.checkpoint.is_glesam_checkpoint`)
gives a `GleSam` and a `GleSamPredictor`. Every command that runs a model opens it here, so none needs
a `--method` flag at inference. Files are read with the project's safe reader (weights_only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from ..device import resolve_device
from ..errors import CheckpointError
from ..model.build import build_robustsam
from ..model.checkpoint import (
    SAFETENSORS_SUFFIX,
    CheckpointSummary,
    is_glesam_checkpoint,
    is_sam2_state,
    load_torch_file,
    read_state_dict,
    summarize_checkpoint,
)
from ..model.robustsam import RobustSam
from ..model.config import MODEL_CONFIGS
from ..model.sam2_config import is_sam2_type
from .glesam_predictor import GleSamPredictor
from .predictor import RobustPredictor

if TYPE_CHECKING:
    from ..glesam import GleSam
    from ..sam2 import RobustSam2

GLESAM_EXTRA = "pip install 'robustsam[glesam]'"
SAM2_EXTRA = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'robustsam[sam2]'"


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
    sam2_state = _sam2_state(path, content)
    if sam2_state is not None or is_sam2_type(model_type):
        return _open_sam2(path, sam2_state, sam_checkpoint, model_type, device)
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


def is_sam2_checkpoint(checkpoint: str | os.PathLike) -> bool:
    """Whether `checkpoint` holds SAM 2 weights (a SAM 2 / 2.1 or RobustSAM2 state dict, or robust modules for one)."""
    path = Path(checkpoint)
    return _sam2_state(path, _peek(path)) is not None


def _sam2_state(path: Path, content: Optional[Any]) -> Optional[dict[str, torch.Tensor]]:
    """The state dict of a SAM 2 checkpoint (`sam_mask_decoder.*` keys, `{"model": ...}` unwrapped), else None."""
    if content is None and path.suffix.lower() == SAFETENSORS_SUFFIX and path.is_file():
        state: Any = read_state_dict(path)
    elif isinstance(content, dict) and not is_glesam_checkpoint(content):
        state = content.get("model", content)
    else:
        return None
    if not isinstance(state, dict) or not is_sam2_state(state):
        return None
    return read_state_dict(path) if content is not None else state


def _open_sam2(path: Path, state: Optional[dict[str, torch.Tensor]], sam_checkpoint: Optional[str | os.PathLike],
               model_type: Optional[str], device: str | torch.device) -> "RobustSam2":
    """RobustSam2 from a SAM 2 checkpoint, or robust modules over the SAM 2 `sam_checkpoint`."""
    if model_type in MODEL_CONFIGS:
        raise CheckpointError(f"{path}: a SAM 2 checkpoint, not {model_type} (leave out --model-type or name a sam2 type)")
    try:
        from ..sam2 import load_sam2
    except ImportError:
        raise CheckpointError(f"{path}: a SAM 2 model; running it needs the sam2 package: {SAM2_EXTRA}") from None
    state = read_state_dict(path) if state is None else state
    if sam_checkpoint is not None:
        state = {**read_state_dict(sam_checkpoint), **state}
    return load_sam2(path, model_type, state=state, device=device)


def summarize(checkpoint: str | os.PathLike, model_type: Optional[str] = None) -> CheckpointSummary:
    """`core.model.summarize_checkpoint` for any RobustSAM, SAM or SAM 2 checkpoint (SAM 2 through `core.sam2`)."""
    state = read_state_dict(checkpoint)
    if not is_sam2_state(state):
        return summarize_checkpoint(checkpoint, model_type)
    try:
        from ..sam2.build import summarize_sam2_state
    except ImportError:
        raise CheckpointError(f"{checkpoint}: a SAM 2 checkpoint; reading it needs the sam2 package: {SAM2_EXTRA}") from None
    return summarize_sam2_state(state, checkpoint, model_type)


@dataclass(frozen=True)
class ModelChoice:
    """A model as the command line names it, for opening again elsewhere (e.g. in every torchrun worker)."""

    checkpoint: Path
    model_type: Optional[str] = None
    sam_checkpoint: Optional[Path] = None

    def open(self, device: str | torch.device = "cpu") -> Union[RobustSam, "GleSam", "RobustSam2"]:
        """`open_model` of this checkpoint on `device`."""
        return open_model(self.checkpoint, sam_checkpoint=self.sam_checkpoint, model_type=self.model_type, device=device)


def make_predictor(model: Union[RobustSam, "GleSam", "RobustSam2"], *, robust: bool = True, precision: str = "fp32") -> RobustPredictor:
    """The predictor of a model `open_model` returned: GleSamPredictor for a GleSam (which has one path;
    `robust` is then ignored), Sam2Predictor for a RobustSam2, else RobustPredictor on the robust path or,
    with `robust=False`, SAM's."""
    if isinstance(model, RobustSam):
        return RobustPredictor(model, robust=robust, precision=precision)
    if not hasattr(model, "sam"):
        from ..sam2 import Sam2Predictor

        return Sam2Predictor(model, robust=robust, precision=precision)
    return GleSamPredictor(model, precision=precision)


def open_predictor(checkpoint: str | os.PathLike, *, sam_checkpoint: Optional[str | os.PathLike] = None,
                   model_type: Optional[str] = None, robust: bool = True, precision: str = "fp32",
                   device: str | torch.device = "cpu") -> RobustPredictor:
    """`make_predictor(open_model(checkpoint, ...), robust=robust, precision=precision)`."""
    model = open_model(checkpoint, sam_checkpoint=sam_checkpoint, model_type=model_type, device=device)
    return make_predictor(model, robust=robust, precision=precision)

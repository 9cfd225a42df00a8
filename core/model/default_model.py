"""The built-in default model: a tiny RobustSAM trained on photo-textured scenes, shipped in the package.

It lets every command run right after install; real images need a real checkpoint.
`scripts/build_default_model.py` regenerates it from scratch. The file is a wrapper
`{"model": state_dict, "amg_defaults": {...}}`: the automatic-mask-generation settings calibrated
for this model travel with its weights. Released checkpoints hold no such entry and keep
segment-anything's defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import torch

from ..errors import CheckpointError
from ..io import load_torch_file

DEFAULT_CHECKPOINT = Path(__file__).parents[1] / "assets" / "robustsam_default.pth"
DEFAULT_NAME = "default"
DEFAULT_MODEL_TYPE = "vit_micro_p8"  # what infer_model_type reads from the packaged file (tests check it)
DEFAULT_NOTICE = "using the built-in tiny model (128 px, trained on photo-textured scenes); pass --checkpoint for real images"
AMG_DEFAULTS_KEY = "amg_defaults"
# The generator settings a checkpoint may carry, with their types.
AMG_SETTINGS: dict[str, type] = {
    "points_per_side": int,
    "pred_iou_thresh": float,
    "stability_score_thresh": float,
    "box_nms_thresh": float,
    "min_mask_region_area": int,
}


def default_checkpoint() -> Optional[Path]:
    """The packaged checkpoint, or None in an installation that lacks it."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None


def is_default_name(checkpoint: Optional[str | os.PathLike]) -> bool:
    """True when `checkpoint` is the name `default` (the built-in model), not a path."""
    return checkpoint is not None and os.fspath(checkpoint) == DEFAULT_NAME


def read_amg_defaults(path: str | os.PathLike) -> dict[str, int | float]:
    """The generator settings stored in checkpoint `path` ({} when it holds none or is unreadable;
    reading the weights reports unreadable files). Loaded memory-mapped: the tensors are not read."""
    try:
        state = load_torch_file(path, mmap=True)
    except CheckpointError:  # the weights' reader reports unreadable files
        return {}
    entry = state.get(AMG_DEFAULTS_KEY) if isinstance(state, Mapping) else None
    if not isinstance(entry, Mapping):
        return {}
    return {key: AMG_SETTINGS[key](value) for key, value in entry.items() if key in AMG_SETTINGS and isinstance(value, (int, float))}


def save_with_amg_defaults(state: Mapping[str, torch.Tensor], amg_defaults: Mapping[str, int | float], path: str | os.PathLike) -> None:
    """Writes `{"model": state, "amg_defaults": ...}` to `path`; unknown settings are refused."""
    unknown = sorted(set(amg_defaults) - set(AMG_SETTINGS))
    if unknown:
        raise ValueError(f"not generator settings a checkpoint may carry: {', '.join(unknown)}")
    settings = {key: AMG_SETTINGS[key](value) for key, value in amg_defaults.items()}
    torch.save({"model": dict(state), AMG_DEFAULTS_KEY: settings}, path)

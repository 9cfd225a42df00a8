"""Writing checkpoints as .pth or .safetensors (chosen by suffix), and a .safetensors file's metadata.

A .safetensors checkpoint holds the flat state dict; its metadata records the model type and the
RobustSAM/SAM split, so a reader knows what the file covers without loading the tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from ..io import atomic_path, load_torch_file
from ..errors import CheckpointError
from ..model.checkpoint import SAFETENSORS_SUFFIX, is_robust_key
from ..model.decoder import ROBUST_MODULES

FORMAT = "robustsam"


def split_metadata(state: Mapping[str, torch.Tensor], model_type: str) -> dict[str, str]:
    """safetensors metadata (strings only) for `state`: model type, contents, tensors per part."""
    robust = [key for key in state if is_robust_key(key)]
    contents = "robust modules only" if len(robust) == len(state) else "RobustSAM" if robust else "SAM only"
    modules = [name for name in ROBUST_MODULES if any(key.split(".")[1] == name for key in robust)]
    return {
        "format": FORMAT,
        "model_type": model_type,
        "contents": contents,
        "sam_tensors": str(len(state) - len(robust)),
        "robust_tensors": str(len(robust)),
        "robust_modules": ",".join(modules),
    }


def save_weights(state: Mapping[str, torch.Tensor], path: str | os.PathLike, model_type: str) -> Path:
    """Writes the state dict to `path` atomically: safetensors (with `split_metadata`) for a
    .safetensors suffix, else torch.save. Returns `path`."""
    path = Path(path)
    with atomic_path(path) as temporary:
        if path.suffix.lower() == SAFETENSORS_SUFFIX:
            from safetensors.torch import save_file

            # safetensors refuses tensors sharing memory or not contiguous; a checkpoint owns its tensors.
            tensors = {key: value.detach().contiguous().clone() for key, value in state.items()}
            save_file(tensors, temporary, metadata=split_metadata(tensors, model_type))
        else:
            torch.save(dict(state), temporary)
    return path


def read_weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a .safetensors checkpoint ({} for other files or none stored)."""
    path = Path(path)
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({error})") from None


def export_weights(checkpoint: str | os.PathLike, target: str | os.PathLike) -> tuple[Path, str, int]:
    """The model weights of `checkpoint` (a bare state dict or a robustsam train checkpoint, whose
    'model' entry they are) written to `target` by `save_weights`: (path, model type, tensors)."""
    from ..model.checkpoint import infer_model_type, read_state_dict

    state = read_state_dict(checkpoint)
    recorded = None if Path(checkpoint).suffix.lower() == ".safetensors" else load_torch_file(checkpoint).get("model_type")
    model_type = recorded if isinstance(recorded, str) else infer_model_type(state, checkpoint)
    return save_weights(state, target, model_type), model_type, len(state)

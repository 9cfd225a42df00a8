"""Reading checkpoints: released RobustSAM, plain SAM, robust-modules-only, with clear errors."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .config import MODEL_CONFIGS, get_config
from .decoder import ROBUST_MODULES
from ..errors import CheckpointError
from ..io import load_torch_file
from .robustsam import RobustSam

# SAM's decoder is `mask_decoder`, SAM 2's `sam_mask_decoder` (core.sam2): the robust modules sit in either.
_ROBUST_PREFIXES = tuple(f"{decoder}.{name}." for decoder in ("mask_decoder", "sam_mask_decoder") for name in ROBUST_MODULES)
_WRAPPER_KEYS = ("model", "state_dict")
_SHOWN_KEYS = 5
SAFETENSORS_SUFFIX = ".safetensors"
# A GleSAM checkpoint (core.glesam) is {"glesam": {"kind": "glesam", ...}, "sam": ..., "unet": ...}.
GLESAM_KIND = "glesam"


class RobustModulesUninitialized(UserWarning):
    """The weights given cover SAM only: the robust modules keep their fresh initialisation."""


def is_robust_key(key: str) -> bool:
    """True for the keys RobustSAM adds to a SAM (or SAM 2) checkpoint."""
    return key.startswith(_ROBUST_PREFIXES)


def is_sam2_state(state: Mapping[str, Any]) -> bool:
    """Whether a state dict holds SAM 2 weights (SAM 2's decoder is `sam_mask_decoder`, SAM's `mask_decoder`)."""
    return any(isinstance(key, str) and key.startswith("sam_mask_decoder.") for key in state)


@lru_cache(maxsize=None)
def expected_shapes(model_type: str) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of `model_type` with its shape, in checkpoint order (built on the meta device)."""
    with torch.device("meta"):
        model = RobustSam(get_config(model_type), model_type)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def is_glesam_checkpoint(content: Any) -> bool:
    """True for the content of a GleSAM checkpoint (as `robustsam train --method glesam` writes it)."""
    return isinstance(content, Mapping) and isinstance(content.get("glesam"), Mapping) and content["glesam"].get("kind") == GLESAM_KIND


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors by key, unwrapped from {'model': ...} and without a 'module.' prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    state = load_torch_file(path)
    if is_glesam_checkpoint(state):
        raise CheckpointError(f"{path}: a GleSAM checkpoint, not a SAM/RobustSAM state dict "
                              "(segment, eval and prior run it; training and export take SAM/RobustSAM weights)")
    for wrapper in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: not a state dict of named tensors")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A .safetensors file's tensors by key (safetensors stores named tensors only: no unpickling)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({first_line})") from None
    if not state:
        raise CheckpointError(f"{path}: holds no tensors")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def _shape_mismatches(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    problems = []
    for key, value in state.items():
        if key not in expected:
            problems.append(f"{key} (not in the model)")
        elif tuple(value.shape) != expected[key]:
            problems.append(f"{key} {tuple(value.shape)} != {expected[key]}")
    return problems


def _summarise(problems: list[str]) -> str:
    shown = "; ".join(problems[:_SHOWN_KEYS])
    more = f"; and {len(problems) - _SHOWN_KEYS} more" if len(problems) > _SHOWN_KEYS else ""
    return f"{len(problems)} keys: {shown}{more}"


def _fitting_types(*states: Mapping[str, torch.Tensor]) -> list[str]:
    """The registered model types whose keys and shapes fit every tensor of every state, in registry order."""
    return [name for name in MODEL_CONFIGS if all(not _shape_mismatches(state, expected_shapes(name)) for state in states)]


def infer_model_type(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """The registered model type whose keys and shapes fit every tensor of `state`."""
    fits = _fitting_types(state)
    if not fits:
        raise CheckpointError(f"{path}: fits no known model type ({', '.join(MODEL_CONFIGS)})")
    return fits[0]


def _common_model_type(states: list[tuple[str | os.PathLike, Mapping[str, torch.Tensor]]]) -> str:
    """The first model type that fits every checkpoint: a robust-modules checkpoint alone can fit
    several (the modules do not depend on the patch size), its SAM checkpoint decides."""
    fits = _fitting_types(*(state for _, state in states))
    # None fits all: the last checkpoint's own type, so that _check_fits names the one that disagrees.
    return fits[0] if fits else infer_model_type(states[-1][1], states[-1][0])


def _check_fits(state: Mapping[str, torch.Tensor], model_type: str, path: str | os.PathLike) -> None:
    problems = _shape_mismatches(state, expected_shapes(model_type))
    if problems:
        fits = _fitting_types(state)
        hint = f" (it is a {fits[0]} checkpoint)" if fits else ""
        raise CheckpointError(f"{path}: does not fit model type {model_type}{hint}: {_summarise(problems)}")


def _missing(present: set[str], wanted: list[str], path: str | os.PathLike, what: str) -> None:
    absent = [key for key in wanted if key not in present]
    if absent:
        raise CheckpointError(f"{path}: lacks {what}: {_summarise(absent)}")


@dataclass
class ResolvedWeights:
    """What `resolve_weights` found: the model type and the state dict to load (None: fresh weights)."""

    model_type: str
    state_dict: Optional[dict[str, torch.Tensor]]
    has_robust: bool


def resolve_weights(
    checkpoint: Optional[str | os.PathLike],
    sam_checkpoint: Optional[str | os.PathLike] = None,
    model_type: Optional[str] = None,
) -> ResolvedWeights:
    """Reads and checks the given checkpoints and merges them into one state dict for `model_type`."""
    states = [(path, read_state_dict(path)) for path in (sam_checkpoint, checkpoint) if path is not None]
    if model_type is None:
        if not states:
            raise CheckpointError("no checkpoint given: pass a model type or a checkpoint")
        model_type = _common_model_type(states)
    get_config(model_type)
    for path, state in states:
        _check_fits(state, model_type, path)
    if not states:
        return ResolvedWeights(model_type, None, has_robust=False)

    keys = list(expected_shapes(model_type))
    sam_keys = [key for key in keys if not is_robust_key(key)]
    robust_keys = [key for key in keys if is_robust_key(key)]
    merged: dict[str, torch.Tensor] = {}
    if sam_checkpoint is not None:
        sam_state = states[0][1]
        _missing(set(sam_state), sam_keys, sam_checkpoint, "SAM weights")
        merged.update((key, sam_state[key]) for key in sam_keys)
    if checkpoint is not None:
        state = states[-1][1]
        present = set(state)
        only_robust = present <= set(robust_keys)
        if only_robust and sam_checkpoint is None:
            raise CheckpointError(
                f"{checkpoint}: holds the robust modules only; give the SAM checkpoint too (sam_checkpoint / --sam-checkpoint)"
            )
        if not only_robust:
            _missing(present, sam_keys, checkpoint, "SAM weights")
        if present & set(robust_keys):
            _missing(present, robust_keys, checkpoint, "robust-module weights")
        merged.update(state)
    has_robust = all(key in merged for key in robust_keys)
    if not has_robust:
        source = checkpoint if checkpoint is not None else sam_checkpoint
        warnings.warn(
            f"{source}: a SAM checkpoint without RobustSAM modules; the robust modules start untrained",
            RobustModulesUninitialized,
            stacklevel=3,
        )
    return ResolvedWeights(model_type, merged, has_robust)


@dataclass
class CheckpointSummary:
    """What a checkpoint file holds: its model type and parameter counts per module."""

    path: Path
    model_type: str
    sam_parameters: int
    robust_parameters: int
    modules: dict[str, int]  # top-level module name ('image_encoder', 'mask_decoder.robust_mlp', ...) -> parameters
    missing_modules: list[str]

    @property
    def kind(self) -> str:
        """'RobustSAM', 'SAM only', 'robust modules only', or 'incomplete' when modules are missing."""
        if not self.robust_parameters:
            kind = "SAM only"
        elif not self.sam_parameters:
            kind = "robust modules only"
        else:
            kind = "RobustSAM"
        robust_missing = any(is_robust_key(name + ".") for name in self.missing_modules)
        sam_missing = any(not is_robust_key(name + ".") for name in self.missing_modules)
        incomplete = {"SAM only": sam_missing, "robust modules only": robust_missing}.get(kind, bool(self.missing_modules))
        return f"{kind} (incomplete)" if incomplete else kind


def _module_of(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if is_robust_key(key) else parts[0]


def summarize_checkpoint(path: str | os.PathLike, model_type: Optional[str] = None) -> CheckpointSummary:
    """Reads `path` and counts its parameters (batch-norm statistics excluded) per module."""
    state = read_state_dict(path)
    if is_sam2_state(state):
        raise CheckpointError(f"{path}: a SAM 2 checkpoint; core.inference.summarize reads it")
    model_type = model_type or infer_model_type(state, path)
    _check_fits(state, model_type, path)
    modules: dict[str, int] = {}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        modules[_module_of(key)] = modules.get(_module_of(key), 0) + value.numel()
    expected_modules = dict.fromkeys(_module_of(key) for key in expected_shapes(model_type))
    robust = sum(count for name, count in modules.items() if name.startswith("mask_decoder."))
    return CheckpointSummary(
        path=Path(path),
        model_type=model_type,
        sam_parameters=sum(modules.values()) - robust,
        robust_parameters=robust,
        modules={name: modules[name] for name in expected_modules if name in modules},
        missing_modules=[name for name in expected_modules if name not in modules],
    )

"""Building RobustSAM2 from `sam2`'s configuration files and reading SAM 2 / 2.1 checkpoints
(Meta's `{"model": state_dict}` files, ours, or `.safetensors`), strictly."""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..device import resolve_device
from ..errors import CheckpointError
from ..model.checkpoint import CheckpointSummary, RobustModulesUninitialized, is_sam2_state, read_state_dict
from ..model.robust_head import ROBUST_MODULES
from ..model.sam2_config import SAM2_CONFIGS, get_sam2_config
from .model import RobustSam2

SAM2_DECODER_PREFIX = "sam_mask_decoder."
_ROBUST_PREFIXES = tuple(f"{SAM2_DECODER_PREFIX}{name}." for name in ROBUST_MODULES)
_TRUNK = "image_encoder.trunk."


def is_sam2_robust_key(key: str) -> bool:
    """Whether `key` belongs to the RobustSAM modules of a RobustSam2."""
    return key.startswith(_ROBUST_PREFIXES)


@functools.cache
def _fingerprint_of_config(model_type: str) -> tuple[int, int, int, bool]:
    """(trunk width, trunk depth, neck width, SAM 2.1) of a configuration; Hiera's defaults fill what it leaves out."""
    from sam2.modeling.backbones.hieradet import Hiera

    model = get_sam2_config(model_type).compose().model
    trunk = model.image_encoder.trunk
    defaults = inspect.signature(Hiera).parameters
    embed_dim, stages = (trunk.get(name, defaults[name].default) for name in ("embed_dim", "stages"))
    return (embed_dim, sum(stages), model.image_encoder.neck.d_model, bool(model.get("no_obj_embed_spatial")))


def _fingerprint_of_state(state: Mapping[str, torch.Tensor]) -> tuple[int, int, int, bool]:
    blocks = {key[len(_TRUNK) + len("blocks.") :].split(".")[0] for key in state if key.startswith(_TRUNK + "blocks.")}
    embed = state.get(_TRUNK + "patch_embed.proj.weight")
    no_mem = state.get("no_mem_embed")
    if embed is None or no_mem is None:
        return (0, 0, 0, False)
    return (embed.shape[0], len(blocks), no_mem.shape[-1], "no_obj_embed_spatial" in state)


def infer_sam2_type(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """The SAM 2 model type whose configuration the state dict's trunk width, depth, neck width and
    version (SAM 2.1 adds `no_obj_embed_spatial`) match; CheckpointError naming `path` when none does."""
    found = _fingerprint_of_state(state)
    for model_type in SAM2_CONFIGS:
        if _fingerprint_of_config(model_type) == found:
            return model_type
    raise CheckpointError(
        f"{path}: SAM 2 weights of no known size (Hiera width {found[0]}, {found[1]} blocks); "
        f"name one of {', '.join(SAM2_CONFIGS)}"
    )


def build_sam2_model(model_type: str, *, image_size: Optional[int] = None) -> RobustSam2:
    """A RobustSam2 of `model_type` with fresh weights, composed from the `sam2` package's configuration
    files (`image_size` overrides the input side, a multiple of 32)."""
    from hydra.utils import instantiate

    config = get_sam2_config(model_type).compose(image_size)
    config.model._target_ = f"{RobustSam2.__module__}.{RobustSam2.__qualname__}"
    model = instantiate(config.model, _recursive_=True)
    model.model_type = model_type
    return model


def check_sam2_state(state: Mapping[str, torch.Tensor], model: RobustSam2, path: str | os.PathLike) -> bool:
    """Raises CheckpointError naming `path` unless `state` holds every SAM 2 weight of `model` with its
    shape (and the robust modules whole or not at all). Returns whether the robust modules are there."""
    if not is_sam2_state(state):
        raise CheckpointError(f"{path}: not a SAM 2 checkpoint (no {SAM2_DECODER_PREFIX}* keys; a SAM 1 checkpoint has mask_decoder.*)")
    own = model.state_dict()
    unexpected = [key for key in state if key not in own]
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} keys {model.model_type} does not have, e.g. {unexpected[0]}")
    wrong = [key for key, value in state.items() if tuple(value.shape) != tuple(own[key].shape)]
    if wrong:
        key = wrong[0]
        raise CheckpointError(
            f"{path}: {len(wrong)} tensors do not fit {model.model_type}, e.g. {key} {tuple(state[key].shape)} "
            f"where {tuple(own[key].shape)} is needed"
        )
    for robust, what in ((False, "SAM 2 weights"), (True, "robust-module weights")):
        wanted = [key for key in own if is_sam2_robust_key(key) == robust]
        missing = [key for key in wanted if key not in state]
        if missing and (not robust or len(missing) < len(wanted)):
            raise CheckpointError(f"{path}: {len(missing)} {what} missing, e.g. {missing[0]}")
    return any(is_sam2_robust_key(key) for key in state)


def summarize_sam2_state(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                         model_type: Optional[str] = None) -> CheckpointSummary:
    """`core.model.summarize_checkpoint` for a SAM 2 state dict: parameters per top-level module, robust
    modules under `sam_mask_decoder.`; CheckpointError when the state does not fit its type."""
    model_type = model_type or infer_sam2_type(state, path)
    model = build_sam2_model(model_type)
    check_sam2_state(state, model, path)
    modules: dict[str, int] = {}
    for key, value in state.items():
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            modules[_module_of(key)] = modules.get(_module_of(key), 0) + value.numel()
    expected = dict.fromkeys(_module_of(key) for key in model.state_dict())
    robust = sum(count for name, count in modules.items() if is_sam2_robust_key(name + "."))
    return CheckpointSummary(
        path=Path(path), model_type=model_type, sam_parameters=sum(modules.values()) - robust, robust_parameters=robust,
        modules={name: modules[name] for name in expected if name in modules},
        missing_modules=[name for name in expected if name not in modules],
    )


def _module_of(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if is_sam2_robust_key(key) else parts[0]


def read_sam2_weights(checkpoint: str | os.PathLike, sam_checkpoint: Optional[str | os.PathLike] = None,
                      model_type: Optional[str] = None) -> tuple[str, dict[str, torch.Tensor]]:
    """(model type, state) of a SAM 2 checkpoint, or robust modules over the SAM 2 `sam_checkpoint`,
    checked against the model type (inferred unless named); CheckpointError naming the file otherwise."""
    state = read_state_dict(checkpoint)
    if sam_checkpoint is not None:
        state = {**read_state_dict(sam_checkpoint), **state}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustModulesUninitialized)  # SAM 2 weights alone are a valid file
        model = load_sam2(checkpoint, model_type, state=state)
    return model.model_type, state


def load_sam2(
    checkpoint: Optional[str | os.PathLike],
    model_type: Optional[str] = None,
    *,
    state: Optional[Mapping[str, torch.Tensor]] = None,
    device: str | torch.device = "cpu",
) -> RobustSam2:
    """RobustSam2 from a SAM 2 / 2.1 checkpoint (Meta's, or one this package wrote; `state` when already
    read), its type inferred from the keys unless named; in eval mode on `device`. A plain SAM 2
    checkpoint leaves the robust modules untrained (a RobustModulesUninitialized warning)."""
    if checkpoint is None:
        if model_type is None:
            raise CheckpointError("no checkpoint given: pass a SAM 2 model type or a checkpoint")
        return build_sam2_model(model_type).to(resolve_device(device)).eval()
    path = Path(checkpoint)
    state = read_state_dict(path) if state is None else state
    if not is_sam2_state(state):
        raise CheckpointError(f"{path}: a SAM (ViT) checkpoint, not SAM 2: leave out the SAM 2 model type or give a SAM 2 file")
    model_type = infer_sam2_type(state, path) if model_type is None else model_type
    try:
        model = build_sam2_model(model_type)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    has_robust = check_sam2_state(state, model, path)
    if not has_robust:
        warnings.warn(
            f"{path}: a SAM 2 checkpoint without RobustSAM modules; the robust modules start untrained",
            RobustModulesUninitialized,
            stacklevel=2,
        )
    model.load_state_dict(state, strict=has_robust)
    return model.to(resolve_device(device)).eval()

"""GleSAM's model: a frozen SAM image encoder -> the latent enhancer -> SAM's (fine-tuned) mask decoder,
its checkpoint file, and assembling one from GleSAM's released files."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import load_torch_file
from ..model.checkpoint import (
    GLESAM_KIND,
    RobustModulesUninitialized,
    is_glesam_checkpoint,
    is_robust_key,
    read_state_dict,
)
from ..model.config import MODEL_CONFIGS, get_config
from ..model.default_model import AMG_DEFAULTS_KEY
from ..model.robustsam import RobustSam
from .enhancer import PUBLISHED_FEATURE_WEIGHT, PUBLISHED_TIMESTEP, LatentEnhancer
from .unet import (
    PUBLISHED_LORA,
    add_lora,
    expand_channels,
    load_lora_weights,
    load_sd_unet,
    small_unet_config,
    text_context,
    unet_from_config,
)


def build_enhancer(sam: RobustSam, *, unet: Optional[str | os.PathLike] = None, width: int = 32,
                   lora_rank: int = PUBLISHED_LORA["rank"], lora_alpha: float = PUBLISHED_LORA["alpha"],
                   feature_weight: float = PUBLISHED_FEATURE_WEIGHT, timestep: int = PUBLISHED_TIMESTEP) -> LatentEnhancer:
    """The enhancer for `sam`'s embedding: the SD U-Net at `unet` (a diffusers folder or single file; a
    pipeline folder also gives the empty-prompt CLIP context) or, without it, a small random U-Net of
    `width` whose output layer starts at zero; widened to the embedding's channels, base frozen, LoRA added."""
    channels = sam.config.prompt_embed_dim
    if unet is None:
        base, context = unet_from_config(small_unet_config(sample_size=sam.config.embedding_size, width=width)), None
        # from scratch, eps starts at zero: the enhancer starts as (almost) the identity, x0 = x_t / sqrt(a_t)
        torch.nn.init.zeros_(base.conv_out.weight)
        torch.nn.init.zeros_(base.conv_out.bias)
    else:
        base, context = load_sd_unet(unet), text_context(unet)
    wide = expand_channels(base, channels)
    add_lora(wide, lora_rank, lora_alpha, PUBLISHED_LORA["dropout"])
    enhancer = LatentEnhancer(wide, feature_weight, timestep, context)
    enhancer.lora = {"rank": lora_rank, "alpha": lora_alpha}
    return enhancer


class GleSam(nn.Module):
    """`sam` (RobustSam; SAM's path is used, its decoder fine-tuned by stage 2) with `enhancer` between the
    image encoder and the mask decoder. `embed` maps preprocessed images (B, 3, S, S) to enhanced
    embeddings (B, D, S/16, S/16)."""

    def __init__(self, sam: RobustSam, enhancer: LatentEnhancer) -> None:
        super().__init__()
        self.sam = sam
        self.enhancer = enhancer

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """SAM's (frozen) embedding of preprocessed images, (B, D, h, w)."""
        return self.sam.encode(images)[0]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.enhancer(self.encode(images))


def checkpoint_dict(model: GleSam, unet_source: Optional[str] = None,
                    amg_defaults: Optional[Mapping[str, int | float]] = None) -> dict[str, Any]:
    """The checkpoint: SAM's full state (with the fine-tuned decoder), the enhancer's settings and U-Net
    weights, and the segment-everything settings of the SAM it started from. With `unet_source` (an SD
    U-Net on disk) only the LoRA weights are stored: loading then needs that U-Net again."""
    unet_state = model.enhancer.unet.state_dict()
    if unet_source is not None:
        unet_state = {key: value for key, value in unet_state.items() if ".lora_" in key}
    settings = model.enhancer.settings()
    settings.update(kind=GLESAM_KIND, model_type=model.sam.model_type, lora=dict(model.enhancer.lora),
                    unet_source=unet_source)
    state = {"glesam": settings, "sam": model.sam.state_dict(), "unet": unet_state}
    if amg_defaults:
        state[AMG_DEFAULTS_KEY] = dict(amg_defaults)
    return state


def _settings(content: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The checked settings of a GleSAM checkpoint's content."""
    settings = dict(content["glesam"])
    wanted = {"model_type": str, "unet_config": Mapping, "lora": Mapping, "feature_weight": float, "timestep": int,
              "context": torch.Tensor}
    for key, kind in wanted.items():
        if not isinstance(settings.get(key), kind if kind is not float else (int, float)):
            raise CheckpointError(f"{path}: GleSAM settings lack a valid {key!r}")
    if settings["model_type"] not in MODEL_CONFIGS:
        raise CheckpointError(f"{path}: GleSAM model type {settings['model_type']!r} is not one of {', '.join(MODEL_CONFIGS)}")
    if not all(isinstance(content.get(key), Mapping) for key in ("sam", "unet")):
        raise CheckpointError(f"{path}: a GleSAM checkpoint without its 'sam' and 'unet' weights")
    return settings


def _first_problem(error: RuntimeError) -> str:
    """The first mismatch torch's load_state_dict reports (its first line only names the model)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__).rstrip(".")


def glesam_from_content(content: Any, path: str | os.PathLike, *, unet: Optional[str | os.PathLike] = None,
                        device: str | torch.device = "cpu") -> GleSam:
    """A GleSam from the loaded content of a GleSAM checkpoint at `path` (named in errors); `unet` overrides
    the U-Net source a LoRA-only checkpoint names. CheckpointError, one line, on any mismatch."""
    path = Path(path)
    if not is_glesam_checkpoint(content):
        raise CheckpointError(f"{path}: not a GleSAM checkpoint (no 'glesam' settings)")
    settings = _settings(content, path)
    sam = RobustSam(get_config(settings["model_type"]), settings["model_type"])
    try:
        sam.load_state_dict(content["sam"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: SAM weights do not fit {settings['model_type']} ({_first_problem(error)})") from None
    source = unet if unet is not None else settings.get("unet_source")
    try:
        if source is None:
            wide = unet_from_config(dict(settings["unet_config"]))
        else:
            wide = expand_channels(load_sd_unet(source), sam.config.prompt_embed_dim)
        add_lora(wide, int(settings["lora"]["rank"]), float(settings["lora"]["alpha"]))
    except CheckpointError as error:
        raise CheckpointError(f"{path}: its U-Net: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: GleSAM U-Net settings unusable ({type(error).__name__}: {error})") from None
    try:
        missing, unexpected = wide.load_state_dict(content["unet"], strict=False)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: U-Net weights do not fit ({_first_problem(error)})") from None
    lora_missing = [key for key in missing if ".lora_" in key or source is None]
    if lora_missing or unexpected:
        names = (lora_missing or unexpected)[:1]
        raise CheckpointError(f"{path}: U-Net weights do not fit ({len(lora_missing)} missing, {len(unexpected)} unexpected, e.g. {names})")
    context = settings["context"]
    if context.ndim != 3 or context.shape[-1] != wide.config.cross_attention_dim:
        raise CheckpointError(f"{path}: text context {tuple(context.shape)} does not fit the U-Net's {wide.config.cross_attention_dim} channels")
    enhancer = LatentEnhancer(wide, settings["feature_weight"], settings["timestep"], context)
    enhancer.lora = {"rank": int(settings["lora"]["rank"]), "alpha": float(settings["lora"]["alpha"])}
    return GleSam(sam, enhancer).to(device).eval()


def load_glesam(path: str | os.PathLike, *, unet: Optional[str | os.PathLike] = None, device: str | torch.device = "cpu") -> GleSam:
    """A GleSam from a checkpoint written by `robustsam train --method glesam`, read with the project's
    safe reader (weights_only); see `glesam_from_content`."""
    return glesam_from_content(load_torch_file(path, what="GleSAM checkpoint"), path, unet=unet, device=device)


def load_released_decoder(sam: RobustSam, state: dict[str, torch.Tensor], source: str) -> None:
    """GleSAM's released decoder checkpoint (`epoch_last.pth`, a whole SAM state dict, `module.` prefixes
    allowed): its `mask_decoder.*` SAM keys replace `sam`'s decoder; every SAM decoder key must be there."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    own = {key: value for key, value in sam.state_dict().items() if key.startswith("mask_decoder.")}
    needed = [key for key in own if not is_robust_key(key)]
    missing = [key for key in needed if key not in state or state[key].shape != own[key].shape]
    if missing:
        raise CheckpointError(f"{source}: not a SAM decoder of this size ({len(missing)} keys missing or mis-shaped, e.g. {missing[0]})")
    sam.load_state_dict({key: state[key] for key in needed}, strict=False)


def from_released(sam_checkpoint: str | os.PathLike, unet: str | os.PathLike, lora: str | os.PathLike,
                  decoder: str | os.PathLike, *, lora_alpha: float = PUBLISHED_LORA["alpha"],
                  feature_weight: float = PUBLISHED_FEATURE_WEIGHT, timestep: int = PUBLISHED_TIMESTEP) -> GleSam:
    """GleSAM from its released files: the SAM checkpoint it was trained on, the SD U-Net (`unet`, a
    pipeline folder for the CLIP context), the LoRA file (`pytorch_lora_weights.safetensors`, rank read
    from it; its alpha is not stored, the published 8 by default) and the decoder (`epoch_last.pth`).
    `checkpoint_dict(model, unet_source=str(unet))` then writes it as a GleSAM checkpoint."""
    from ..model.build import build_robustsam

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustModulesUninitialized)  # GleSAM runs SAM's path only
        sam = build_robustsam(None, sam_checkpoint)
    lora_state = read_state_dict(lora)
    downs = [value for key, value in lora_state.items() if key.endswith((".lora.down.weight", ".lora_A.weight"))]
    if not downs:
        raise CheckpointError(f"{lora}: no `*.lora.down.weight` / `*.lora_A.weight` tensors (not a GleSAM LoRA file)")
    enhancer = build_enhancer(sam, unet=unet, lora_rank=downs[0].shape[0], lora_alpha=lora_alpha,
                              feature_weight=feature_weight, timestep=timestep)
    load_lora_weights(enhancer.unet, lora_state, str(lora))
    load_released_decoder(sam, read_state_dict(decoder), str(decoder))
    return GleSam(sam, enhancer).eval()

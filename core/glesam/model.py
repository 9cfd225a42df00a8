"""GleSAM's model: a frozen SAM image encoder -> the latent enhancer -> SAM's (fine-tuned) mask decoder,
and its checkpoint file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import CheckpointError
from ..model.checkpoint import load_torch_file
from ..model.robustsam import RobustSam
from .enhancer import PUBLISHED_FEATURE_WEIGHT, PUBLISHED_TIMESTEP, LatentEnhancer
from .unet import PUBLISHED_LORA, add_lora, expand_channels, load_sd_unet, small_unet_config, unet_from_config

CHECKPOINT_KIND = "glesam"


def build_enhancer(sam: RobustSam, *, unet: Optional[str | os.PathLike] = None, width: int = 32,
                   lora_rank: int = PUBLISHED_LORA["rank"], lora_alpha: float = PUBLISHED_LORA["alpha"],
                   feature_weight: float = PUBLISHED_FEATURE_WEIGHT, timestep: int = PUBLISHED_TIMESTEP) -> LatentEnhancer:
    """The enhancer for `sam`'s embedding: the SD U-Net at `unet` (a diffusers folder or single file) or, without
    it, a small random U-Net of `width`, widened to the embedding's channels, base frozen, LoRA added."""
    channels = sam.config.prompt_embed_dim
    if unet is None:
        size = sam.config.embedding_size
        base = unet_from_config(small_unet_config(sample_size=size, width=width))
    else:
        base = load_sd_unet(unet)
    wide = expand_channels(base, channels)
    add_lora(wide, lora_rank, lora_alpha, PUBLISHED_LORA["dropout"])
    enhancer = LatentEnhancer(wide, feature_weight, timestep)
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


def checkpoint_dict(model: GleSam, unet_source: Optional[str] = None) -> dict[str, Any]:
    """The checkpoint: SAM's full state (with the fine-tuned decoder), the enhancer's settings and U-Net
    weights. With `unet_source` (an SD U-Net on disk) only the LoRA weights are stored: loading then
    needs that U-Net again."""
    unet_state = model.enhancer.unet.state_dict()
    if unet_source is not None:
        unet_state = {key: value for key, value in unet_state.items() if ".lora_" in key}
    settings = model.enhancer.settings()
    settings.update(kind=CHECKPOINT_KIND, model_type=model.sam.model_type, lora=dict(model.enhancer.lora),
                    unet_source=unet_source)
    return {"glesam": settings, "sam": model.sam.state_dict(), "unet": unet_state}


def is_glesam_checkpoint(state: Any) -> bool:
    return isinstance(state, dict) and isinstance(state.get("glesam"), dict) and state["glesam"].get("kind") == CHECKPOINT_KIND


def load_glesam(path: str | os.PathLike, *, unet: Optional[str | os.PathLike] = None, device: str | torch.device = "cpu") -> GleSam:
    """A GleSam from a checkpoint written by `robustsam train --method glesam` (`unet` overrides the U-Net
    source a LoRA-only checkpoint names). Raises CheckpointError naming the file on any mismatch."""
    from ..model.config import get_config

    path = Path(path)
    state = load_torch_file(path, "GleSAM checkpoint")
    if not is_glesam_checkpoint(state):
        raise CheckpointError(f"{path}: not a GleSAM checkpoint (no 'glesam' settings)")
    settings = state["glesam"]
    sam = RobustSam(get_config(settings["model_type"]), settings["model_type"])
    try:
        sam.load_state_dict(state["sam"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: SAM weights do not fit {settings['model_type']} ({str(error).splitlines()[0]})") from None
    source = unet if unet is not None else settings.get("unet_source")
    if source is None:
        wide = unet_from_config(settings["unet_config"])
    else:
        wide = expand_channels(load_sd_unet(source), sam.config.prompt_embed_dim)
    add_lora(wide, settings["lora"]["rank"], settings["lora"]["alpha"])
    missing, unexpected = wide.load_state_dict(state["unet"], strict=False)
    lora_missing = [key for key in missing if ".lora_" in key or source is None]
    if lora_missing or unexpected:
        names = (lora_missing or unexpected)[:1]
        raise CheckpointError(f"{path}: U-Net weights do not fit ({len(lora_missing)} missing, {len(unexpected)} unexpected, e.g. {names})")
    enhancer = LatentEnhancer(wide, settings["feature_weight"], settings["timestep"])
    enhancer.lora = dict(settings["lora"])
    return GleSam(sam, enhancer).to(device).eval()


def load_released_decoder(sam: RobustSam, state: dict[str, torch.Tensor], source: str) -> None:
    """GleSAM's released decoder checkpoint (`epoch_last.pth`, a SAM state dict, `module.` prefixes allowed):
    its `mask_decoder.*` SAM keys replace `sam`'s decoder; every SAM decoder key must be there."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    own = {key: value for key, value in sam.state_dict().items() if key.startswith("mask_decoder.")}
    from ..model.checkpoint import is_robust_key

    needed = [key for key in own if not is_robust_key(key)]
    missing = [key for key in needed if key not in state or state[key].shape != own[key].shape]
    if missing:
        raise CheckpointError(f"{source}: not a SAM decoder of this size ({len(missing)} keys missing or mis-shaped, e.g. {missing[0]})")
    sam.load_state_dict({key: state[key] for key in needed}, strict=False)

"""The denoising U-Net of GleSAM: a diffusers `UNet2DConditionModel`, widened from 4 latent channels to
SAM's embedding channels by channel replication, with LoRA adapters through peft.

Recipe (GleSAM's released code, `models/sd_unifined_model_CRE_addlora.py`): the Stable Diffusion U-Net is
rebuilt with `in_channels = out_channels = 256`; its 4-channel `conv_in` kernel is tiled 64 times along
the input channels and its `conv_out` kernel and bias 64 times along the output channels; every base
weight is frozen and LoRA (dropout 0) is added to the modules in `LORA_TARGETS`. Rank and alpha are 8
and 8: what every released training script passes (`--lora_rank 8 --lora_alpha 8`; the argparse
defaults, 64 and 8, are never used).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

from ..errors import CheckpointError

SD_LATENT_CHANNELS = 4
LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0",
    "proj_in", "proj_out",
    "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut",
    "downsamplers.0.conv", "upsamplers.0.conv",
    "time_emb_proj", "conv_in", "conv_out",
)
PUBLISHED_LORA = {"rank": 8, "alpha": 8.0, "dropout": 0.0}


def small_unet_config(sample_size: int = 8, width: int = 32, cross_attention_dim: int = 32) -> dict[str, Any]:
    """A small `UNet2DConditionModel` configuration (about 1M parameters at width 32) with SD's block
    layout in miniature: one cross-attention down block, one plain down block, mirrored on the way up."""
    return {
        "sample_size": sample_size,
        "in_channels": SD_LATENT_CHANNELS,
        "out_channels": SD_LATENT_CHANNELS,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "block_out_channels": (width, 2 * width),
        "layers_per_block": 1,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 4,
        "norm_num_groups": 8,
    }


def load_sd_unet(path: str | os.PathLike) -> UNet2DConditionModel:
    """A Stable Diffusion U-Net from disk: a diffusers folder (`config.json` + weights, or a pipeline folder
    with `unet/`) or a single `.safetensors`/`.ckpt` file in the original SD layout. Nothing is downloaded."""
    path = Path(path)
    try:
        if path.is_dir():
            subfolder = "unet" if (path / "unet" / "config.json").is_file() else None
            return UNet2DConditionModel.from_pretrained(path, subfolder=subfolder, local_files_only=True)
        if path.is_file():
            return UNet2DConditionModel.from_single_file(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a diffusers UNet2DConditionModel ({str(error).splitlines()[0]})") from None
    raise CheckpointError(f"{path}: no such U-Net folder or file")


def has_clip_context(path: str | os.PathLike) -> bool:
    """Whether `path` is an SD pipeline folder with the CLIP tokenizer and text encoder GleSAM conditions on."""
    path = Path(path)
    return (path / "tokenizer").is_dir() and (path / "text_encoder" / "config.json").is_file()


def text_context(path: str | os.PathLike) -> Optional[torch.Tensor]:
    """GleSAM's cross-attention condition, the CLIP embedding of the empty prompt (1, 77, C), from the
    `tokenizer/` and `text_encoder/` of the SD pipeline folder `path`; None when `path` is not such a folder."""
    path = Path(path)
    if not has_clip_context(path):
        return None
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
        encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable CLIP tokenizer or text encoder ({str(error).splitlines()[0]})") from None
    ids = tokenizer([""], max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0].float()


def expand_channels(unet: UNet2DConditionModel, channels: int) -> UNet2DConditionModel:
    """The channel-replication adapter: a copy of a 4-channel `unet` that reads and writes `channels`
    channels, `conv_in` tiled along its inputs and `conv_out` along its outputs (channel c uses the
    4-channel kernel of c mod 4); every other weight is copied unchanged."""
    if channels % SD_LATENT_CHANNELS or unet.config.in_channels != SD_LATENT_CHANNELS:
        raise ValueError(f"channel replication needs a 4-channel U-Net and a multiple of 4 channels, got "
                         f"{unet.config.in_channels} -> {channels}")
    repeat = channels // SD_LATENT_CHANNELS
    wide = UNet2DConditionModel.from_config({**unet.config, "in_channels": channels, "out_channels": channels})
    state = unet.state_dict()
    state["conv_in.weight"] = state["conv_in.weight"].repeat(1, repeat, 1, 1)
    state["conv_out.weight"] = state["conv_out.weight"].repeat(repeat, 1, 1, 1)
    state["conv_out.bias"] = state["conv_out.bias"].repeat(repeat)
    wide.load_state_dict(state)
    return wide


def add_lora(unet: UNet2DConditionModel, rank: int, alpha: float, dropout: float = 0.0) -> UNet2DConditionModel:
    """Freezes every base weight of `unet` and adds LoRA adapters (peft, adapter name 'default') to the
    modules of LORA_TARGETS that it has; only the adapters' lora_A / lora_B weights then train."""
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS)))
    return unet


# Released LoRA key endings -> peft's: diffusers' `convert_state_dict_to_diffusers` (0.27, as GleSAM pins)
# renames only the attention projections' adapters to `lora.down` / `lora.up`; every other module keeps
# peft's `lora_A` / `lora_B` (GleSAM's own `val_load` maps both the same way).
_RELEASED_LORA_ENDINGS = (
    (".lora.down.weight", ".lora_A.default.weight"),
    (".lora.up.weight", ".lora_B.default.weight"),
    (".lora_A.weight", ".lora_A.default.weight"),
    (".lora_B.weight", ".lora_B.default.weight"),
)


def released_lora_to_peft(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GleSAM's released `pytorch_lora_weights.safetensors` (saved by `StableDiffusionPipeline.save_lora_weights`:
    `unet.<module>.lora.down.weight` / `.lora.up.weight` for attention projections, `unet.<module>.lora_A.weight`
    / `.lora_B.weight` for the rest) -> the peft names of this U-Net, `<module>.lora_A.default.weight` /
    `.lora_B.default.weight`. Other keys are refused."""
    mapped = {}
    for key, value in state.items():
        name = key[len("unet."):] if key.startswith("unet.") else key
        for old, new in _RELEASED_LORA_ENDINGS:
            if name.endswith(old):
                mapped[name[: -len(old)] + new] = value
                break
        else:
            raise CheckpointError(f"unexpected key {key!r} in a GleSAM LoRA file (expected unet.*.lora.down/up.weight or lora_A/B.weight)")
    return mapped


def load_lora_weights(unet: UNet2DConditionModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Loads released LoRA weights into a U-Net that already has adapters; every adapter must be covered."""
    mapped = released_lora_to_peft(state)
    own = {key: value for key, value in unet.state_dict().items() if ".lora_" in key}
    missing = sorted(set(own) - set(mapped))
    extra = sorted(set(mapped) - set(own))
    wrong = [key for key in set(own) & set(mapped) if own[key].shape != mapped[key].shape]
    if missing or extra or wrong:
        problem = (f"{len(missing)} adapters missing (e.g. {missing[:1]})" if missing else
                   f"{len(extra)} keys this U-Net lacks (e.g. {extra[:1]})" if extra else
                   f"shape mismatch at {sorted(wrong)[:1]}")
        raise CheckpointError(f"{source}: LoRA weights do not fit this U-Net: {problem}")
    unet.load_state_dict(mapped, strict=False)


def bottleneck(unet: UNet2DConditionModel, sample: torch.Tensor, timesteps: torch.Tensor,
               context: torch.Tensor) -> torch.Tensor:
    """The mid block's output of `unet` on `sample` (B, C, h, w) at `timesteps` (B,), context (B, L, C'):
    (B, C_mid, h / 2**(down blocks - 1), same): the down path alone, what GleSAM's GAN classifier reads
    (its `classify_forward` stops there). For SD-style U-Nets (no class or added embeddings)."""
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timesteps))
    hidden = unet.conv_in(sample)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            hidden, _ = block(hidden_states=hidden, temb=emb, encoder_hidden_states=context)
        else:
            hidden, _ = block(hidden_states=hidden, temb=emb)
    if getattr(unet.mid_block, "has_cross_attention", False):
        return unet.mid_block(hidden, emb, encoder_hidden_states=context)
    return unet.mid_block(hidden, emb)


def bottleneck_size(unet: UNet2DConditionModel, sample_size: int) -> int:
    """The side of `bottleneck`'s output for a `sample_size` input: every down block but the last halves it."""
    return sample_size // 2 ** (len(unet.config.down_block_types) - 1)


def unet_from_config(config: dict[str, Any], dtype: Optional[torch.dtype] = None) -> UNet2DConditionModel:
    """A U-Net with random weights from a configuration dict (as stored in a GleSAM checkpoint)."""
    unet = UNet2DConditionModel.from_config(config)
    return unet if dtype is None else unet.to(dtype)

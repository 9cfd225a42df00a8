"""GleSAM (Guo et al., CVPR 2025): generative latent-space enhancement of SAM's image embedding with a
LoRA-adapted diffusion U-Net (one denoising step), then SAM's fine-tuned decoder. Needs the `glesam`
extra (diffusers, peft); `core.inference.open_predictor` opens GleSAM checkpoints like any other
(as a `core.inference.GleSamPredictor`)."""

from .enhancer import PUBLISHED_FEATURE_WEIGHT, PUBLISHED_TIMESTEP, LatentEnhancer, sd_alphas_cumprod
from .model import (
    GleSam,
    build_enhancer,
    checkpoint_dict,
    from_released,
    glesam_from_content,
    is_glesam_checkpoint,
    load_glesam,
    load_released_decoder,
)
from .unet import (
    LORA_TARGETS,
    PUBLISHED_LORA,
    add_lora,
    expand_channels,
    load_lora_weights,
    load_sd_unet,
    released_lora_to_peft,
    small_unet_config,
    text_context,
)

__all__ = [
    "LORA_TARGETS",
    "PUBLISHED_FEATURE_WEIGHT",
    "PUBLISHED_LORA",
    "PUBLISHED_TIMESTEP",
    "GleSam",
    "LatentEnhancer",
    "add_lora",
    "build_enhancer",
    "checkpoint_dict",
    "expand_channels",
    "from_released",
    "glesam_from_content",
    "is_glesam_checkpoint",
    "load_glesam",
    "load_lora_weights",
    "load_released_decoder",
    "load_sd_unet",
    "released_lora_to_peft",
    "sd_alphas_cumprod",
    "small_unet_config",
    "text_context",
]

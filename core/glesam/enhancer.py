"""The latent enhancer: one denoising step of the (LoRA-adapted) U-Net in SAM's embedding space."""

from __future__ import annotations

import json
from typing import Any, Optional

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn

# The timestep the one step is conditioned on: GleSAM's training scripts pass `--conditioning_timestep 1`
# (the argparse default of 999 is overridden in every released script, train and demo alike).
PUBLISHED_TIMESTEP = 1
# The README's example scale of SAM's embedding before the U-Net (`--feat_weight 5`): the training default.
PUBLISHED_FEATURE_WEIGHT = 5.0
# The scale the released SD 1.5 LoRA runs with: `train_scripts/demo.sh` loads
# `trained_models/sd1.5/pytorch_lora_weights.safetensors` with `--feat_weight 3`.
RELEASED_FEATURE_WEIGHT = 3.0


def sd_alphas_cumprod() -> torch.Tensor:
    """Stable Diffusion's training schedule (1000 steps, scaled-linear betas 0.00085..0.012), (1000,) float64."""
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return scheduler.alphas_cumprod.double()


class LatentEnhancer(nn.Module):
    """Low-quality SAM embedding (B, D, h, w) -> enhanced embedding (B, D, h, w).

    Feature-distribution alignment: the embedding is multiplied by `feature_weight` so that its values sit
    in the range of SD latents, treated as the noisy sample x_t at `timestep`, and the U-Net's noise
    prediction eps gives x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t); x0 / feature_weight goes to the decoder.

    `context` (1, L, C) is the cross-attention condition: GleSAM's is the CLIP embedding of the empty
    prompt (its RAM captions are switched off in the released code); `text_context` computes it from an
    SD pipeline folder. Without one (a bare U-Net, or the small U-Net from scratch) it is a zero token.
    """

    def __init__(self, unet: UNet2DConditionModel, feature_weight: float = PUBLISHED_FEATURE_WEIGHT,
                 timestep: int = PUBLISHED_TIMESTEP, context: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        if not 0 <= timestep < 1000:
            raise ValueError(f"timestep must be in 0..999, got {timestep}")
        self.unet = unet
        self.feature_weight = float(feature_weight)
        self.timestep = int(timestep)
        if context is None:
            context = torch.zeros(1, 1, unet.config.cross_attention_dim)
        self.register_buffer("context", context.detach().float().clone())
        alpha = sd_alphas_cumprod()[self.timestep]
        self.register_buffer("sqrt_alpha", alpha.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_one_minus_alpha", (1 - alpha).sqrt().float(), persistent=False)

    def scaled_x0(self, embedding: torch.Tensor) -> torch.Tensor:
        """x0 in the aligned (scaled) space, (B, D, h, w): what stage 1's MSE compares with feature_weight * HQ."""
        noisy = embedding * self.feature_weight
        timesteps = torch.full((len(noisy),), self.timestep, device=noisy.device, dtype=torch.long)
        context = self.context.to(noisy.dtype).expand(len(noisy), -1, -1)
        noise = self.unet(noisy, timesteps, context).sample
        return (noisy - self.sqrt_one_minus_alpha * noise) / self.sqrt_alpha

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.scaled_x0(embedding) / self.feature_weight

    def settings(self) -> dict[str, Any]:
        """What a checkpoint stores besides the U-Net weights."""
        # the config as JSON values: a U-Net read from disk carries a Path (`_name_or_path`), which the
        # weights-only reader refuses
        config = {key: value for key, value in json.loads(self.unet.to_json_string()).items() if not key.startswith("_")}
        return {"unet_config": config, "feature_weight": self.feature_weight, "timestep": self.timestep,
                "context": self.context.cpu()}

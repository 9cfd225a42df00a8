"""GleSAM's stage-one guidance (released `models/sd_guidance_model_CRE_addlora.py`, run by
`train_glesam_denoising_unet.py`): distribution matching (DMD) and a diffusion-GAN classifier, from two
score networks beside the enhancer's U-Net (the generator):

* the real score: the widened base U-Net, frozen (for SD, the channel-replicated SD U-Net itself);
* the fake score: a copy with its own LoRA (rank and alpha as the generator's), trained to denoise the
  generator's outputs, with the classifier branch on its mid-block output (real: feature_weight x the
  clear image's embedding; fake: the enhanced one), both noised at a uniform timestep in 0..999.

Every sample lives in the aligned space (feature_weight x SAM's embedding), as the generator's x0.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from peft.tuners.lora import LoraLayer
from torch import nn

from core.glesam import LatentEnhancer, bottleneck, bottleneck_size, sd_alphas_cumprod

# The released flags (`train_scripts/train_glesam_denoising_unet_multi_dataset.sh`)
GENERATOR_EVERY = 5  # --dfake_gen_update_ratio: the generator steps on iterations 0, 5, 10, ...
DM_WEIGHT = 1.0  # --dm_loss_weight (argparse default)
GENERATOR_GAN_WEIGHT = 5e-3  # --gen_cls_loss_weight
CLASSIFIER_WEIGHT = 1e-2  # --guidance_cls_loss_weight
DM_TIMESTEPS = (20, 981)  # randint(min_step, min(max_step + 1, 1000)): --min_step_percent 0.02, --max_step_percent 0.98
TRAIN_TIMESTEPS = 1000  # the fake score's denoising and the classifier's noise (--diffusion_gan_max_timestep 1000)


def classifier_branch(channels: int, size: int) -> nn.Sequential:
    """GleSAM's `cls_pred_branch`: the fake score's mid-block output (B, channels, size, size) -> one realism
    logit (B, 1, 1, 1). A 4x4 stride-2 convolution, then one spanning what is left (4x4 stride 4 on SD's
    8x8 bottleneck, as released), GroupNorm (32 groups, fewer for narrow U-Nets) and SiLU after each, a
    1x1 convolution to the logit."""
    if size < 2 or size % 2:
        raise ValueError(f"the classifier needs an even bottleneck of at least 2, got {size}")
    groups = math.gcd(32, channels)
    return nn.Sequential(
        nn.Conv2d(channels, channels, 4, stride=2, padding=1), nn.GroupNorm(groups, channels), nn.SiLU(),
        nn.Conv2d(channels, channels, size // 2, stride=size // 2), nn.GroupNorm(groups, channels), nn.SiLU(),
        nn.Conv2d(channels, 1, 1),
    )


def _add_noise(sample: torch.Tensor, noise: torch.Tensor, alphas: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    alpha = alphas[timesteps].to(sample.dtype).view(-1, 1, 1, 1)
    return alpha.sqrt() * sample + (1 - alpha).sqrt() * noise


def _x0(noisy: torch.Tensor, eps: torch.Tensor, alphas: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """x0 from a noise prediction, in float64 as released."""
    alpha = alphas[timesteps].view(-1, 1, 1, 1)
    return (noisy.double() - (1 - alpha).sqrt() * eps.double()) / alpha.sqrt()


class Guidance(nn.Module):
    """The real and fake score U-Nets and the classifier, built from the generator `enhancer` at its
    start (before any training; its context is theirs). `train_base`: the fake score trains all its
    weights (the small U-Net from scratch, as the generator does), else its LoRA only.

    `forward` is the guidance update's objective (what DistributedDataParallel wraps); the generator's
    terms are `distribution_matching` and `generator_gan`."""

    def __init__(self, enhancer: LatentEnhancer, sample_size: int, train_base: bool) -> None:
        super().__init__()
        self.real = copy.deepcopy(enhancer.unet)
        self.real.disable_adapters()  # the base alone; at the start of training the generator's base is it
        self.real.requires_grad_(False)
        self.fake = copy.deepcopy(enhancer.unet)
        for module in self.fake.modules():  # its own adapters: fresh lora_A draws, lora_B zero
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)
        channels = self.fake.config.block_out_channels[-1]
        self.classifier = classifier_branch(channels, bottleneck_size(self.fake, sample_size))
        self.register_buffer("context", enhancer.context.clone())
        self.register_buffer("alphas", sd_alphas_cumprod(), persistent=False)
        self.train_base = train_base

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs the guidance update trains: the fake score's LoRA (all of it with
        `train_base`) and the classifier."""
        fake = [(f"fake.{n}", p) for n, p in self.fake.named_parameters() if self.train_base or ".lora_" in n]
        return fake + [(f"classifier.{n}", p) for n, p in self.classifier.named_parameters()]

    def fake_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of the fake score and classifier: their trained weights."""
        names = {name for name, _ in self.trainable()}
        return {key: value for key, value in self.state_dict().items() if key in names}

    def _context(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return self.context.to(dtype).expand(batch, -1, -1)

    def _eps(self, unet: UNet2DConditionModel, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return unet(noisy, timesteps, self._context(len(noisy), noisy.dtype)).sample

    def logits(self, sample: torch.Tensor) -> torch.Tensor:
        """Realism logits (B, 1) of aligned samples (B, D, h, w), noised at a uniform timestep (diffusion GAN)."""
        timesteps = torch.randint(0, TRAIN_TIMESTEPS, (len(sample),), device=sample.device)
        noisy = _add_noise(sample, torch.randn_like(sample), self.alphas, timesteps)
        features = bottleneck(self.fake, noisy, timesteps, self._context(len(noisy), noisy.dtype))
        return self.classifier(features.float()).flatten(1)

    def distribution_matching(self, generated: torch.Tensor) -> torch.Tensor:
        """DMD's loss on the generator's x0 (B, D, h, w): 0.5 MSE to x0 moved against the difference of the
        real and fake scores' x0 predictions, normalised per sample by the real one's mean error."""
        with torch.no_grad():
            timesteps = torch.randint(*DM_TIMESTEPS, (len(generated),), device=generated.device)
            noisy = _add_noise(generated, torch.randn_like(generated), self.alphas, timesteps)
            # the released real score runs classifier-free guidance at scale 8 between two identical
            # conditions (its prompt and unconditional prompt are both ""): the plain prediction
            real = generated - _x0(noisy, self._eps(self.real, noisy, timesteps), self.alphas, timesteps)
            fake = generated - _x0(noisy, self._eps(self.fake, noisy, timesteps), self.alphas, timesteps)
            grad = torch.nan_to_num((real - fake) / real.abs().mean(dim=(1, 2, 3), keepdim=True))
        return 0.5 * F.mse_loss(generated.float(), (generated - grad).detach().float())

    def generator_gan(self, generated: torch.Tensor) -> torch.Tensor:
        """The generator's GAN term: softplus(-logit) of its x0, mean."""
        return F.softplus(-self.logits(generated)).mean()

    def forward(self, generated: torch.Tensor, clear: torch.Tensor) -> dict[str, torch.Tensor]:
        """The guidance update's terms on the generator's (detached) x0 and the aligned clear embeddings
        (both (B, D, h, w)): the fake score's noise-prediction MSE at a uniform timestep and the
        classifier's loss; `guidance_loss` = fake_score + CLASSIFIER_WEIGHT classifier."""
        generated = generated.detach()
        noise = torch.randn_like(generated)
        timesteps = torch.randint(0, TRAIN_TIMESTEPS, (len(generated),), device=generated.device)
        eps = self._eps(self.fake, _add_noise(generated, noise, self.alphas, timesteps), timesteps)
        fake_score = torch.mean((eps.float() - noise.float()) ** 2)
        on_real, on_fake = self.logits(clear.detach()), self.logits(generated)
        classifier = F.softplus(on_fake).mean() + F.softplus(-on_real).mean()
        return {"guidance_loss": fake_score + CLASSIFIER_WEIGHT * classifier, "fake_score": fake_score,
                "classifier": classifier, "realism_real": on_real.sigmoid().mean(), "realism_fake": on_fake.sigmoid().mean()}

"""`mixed_degrade`: a random second-order chain of blur, resize, noise and JPEG in the style of
LQSeg (GleSAM, CVPR 2025), itself following Real-ESRGAN's degradation model."""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d

from .registry import GeneratorArg, check_images, resolve_generators, working_copy
from .sampling import lerp, unit

# Per chain level 1..3: blur sigma (px), downscale factor, noise std (0-255 scale), JPEG quality.
MIXED_LEVELS: Dict[int, Dict[str, Tuple[float, float]]] = {
    1: {"blur": (0.2, 1.0), "scale": (1.0, 1.5), "noise": (1.0, 5.0), "quality": (70.0, 95.0)},
    2: {"blur": (0.5, 2.0), "scale": (1.5, 2.5), "noise": (5.0, 15.0), "quality": (40.0, 80.0)},
    3: {"blur": (1.0, 3.0), "scale": (2.0, 4.0), "noise": (10.0, 25.0), "quality": (20.0, 50.0)},
}
STAGES = 2
BLUR_PROBABILITY = 0.8
GRAY_NOISE_PROBABILITY = 0.4


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    size = min(2 * radius + 1, 2 * ((min(image.shape[-2:]) - 1) // 2) + 1)
    if size < 3:
        return image
    return gaussian_blur2d(image, size, (sigma, sigma), border_type="reflect")


def _chain(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One sample (1, 3, H, W): a level in 1..3, then STAGES x (blur, resize down, noise, JPEG),
    then back to the input size. Every draw happens whether or not its step is applied, so the
    sequence of draws is fixed and the result depends only on the generator's state."""
    height, width = image.shape[-2:]
    level = 1 + min(int(unit(generator) * 3), 2)
    ranges = MIXED_LEVELS[level]
    out = image
    for _ in range(STAGES):
        apply_blur = unit(generator) < BLUR_PROBABILITY
        sigma = lerp(ranges["blur"], unit(generator))
        if apply_blur:
            out = _blur(out, sigma)

        factor = lerp(ranges["scale"], unit(generator))
        mode = ("bilinear", "bicubic", "area")[min(int(unit(generator) * 3), 2)]
        size = (max(8, round(out.shape[-2] / factor)), max(8, round(out.shape[-1] / factor)))
        out = F.interpolate(out, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))

        std = lerp(ranges["noise"], unit(generator)) / 255.0
        gray = unit(generator) < GRAY_NOISE_PROBABILITY
        noise = torch.randn(1 if gray else 3, *out.shape[-2:], generator=generator) * std
        out = (out + noise.to(out).expand_as(out[0])).clamp(0.0, 1.0)

        quality = torch.tensor([round(lerp(ranges["quality"], unit(generator)))])
        out = jpeg_codec_differentiable(out, quality.to(out)).clamp(0.0, 1.0)
    return F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)


def mixed_degrade(images: torch.Tensor, *, generator: GeneratorArg = None) -> torch.Tensor:
    """images (B, 3, H, W) float in [0, 1] on any device -> same shape, device, dtype, in [0, 1].

    Each sample runs its own chain (sizes change per sample, so samples are processed one by one);
    `generator` follows `degrade`'s per-sample contract.
    """
    check_images(images)
    generators = resolve_generators(generator, images.shape[0])
    work = working_copy(images)
    out = torch.cat([_chain(work[i : i + 1], g) for i, g in enumerate(generators)])
    return out.clamp(0.0, 1.0).to(images.dtype)

"""LQSeg (GleSAM, CVPR 2025): blur, random resize, noise and JPEG combined in one chain; the resize rate
1, 2 or 4 makes the levels LQ-1, LQ-2 and LQ-3.

Per sample (its own generator, in this order): Gaussian blur with sigma in [0.2, 3] (kernel 21), a
resize to 1/rate of the side with a random interpolation (bilinear, bicubic, area) and back, Gaussian
noise with sigma in [1, 30] / 255, JPEG with quality in [30, 95] (`codec.jpeg`, libjpeg's tables).
The ranges follow the Real-ESRGAN first-order chain that GleSAM's `degraded_utils` builds on.
"""

from __future__ import annotations

from typing import Sequence

import kornia
import torch
import torch.nn.functional as F

from .codec import jpeg
from .registry import GeneratorArg, sample_generators

LQSEG_RATES = {1: 1, 2: 2, 3: 4}
_MODES = ("bilinear", "bicubic", "area")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _one(image: torch.Tensor, generator: torch.Generator, rate: int) -> torch.Tensor:
    """One (1, 3, H, W) image through the chain."""
    sigma = _uniform(generator, 0.2, 3.0)
    mode = _MODES[int(torch.randint(len(_MODES), (), generator=generator))]
    noise_sigma = _uniform(generator, 1.0, 30.0) / 255
    quality = round(_uniform(generator, 30.0, 95.0))
    noise = torch.randn(image.shape, generator=generator).to(image.device)
    size = image.shape[-2:]
    out = kornia.filters.gaussian_blur2d(image, (21, 21), (sigma, sigma), border_type="reflect")
    if rate > 1:
        small = (max(1, size[0] // rate), max(1, size[1] // rate))
        out = F.interpolate(out, size=small, mode=mode, **({} if mode == "area" else {"align_corners": False}))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    out = (out + noise_sigma * noise).clamp(0, 1)
    return jpeg(out, torch.tensor([quality], device=image.device))


def lqseg(images: torch.Tensor, level: int, generator: GeneratorArg = None) -> torch.Tensor:
    """LQSeg's chain at LQ-`level` (1..3; resize rate 1, 2, 4) on (B, 3, H, W) images in [0, 1].

    Not in DEGRADATIONS: training RobustSAM draws uniformly from that registry, and LQSeg is a chain of
    its own with its own levels. `generator` follows the registry's per-sample contract."""
    if level not in LQSEG_RATES:
        raise ValueError(f"lqseg has levels 1..3 (LQ-1..LQ-3), got {level}")
    rate = LQSEG_RATES[level]
    generators = generator if isinstance(generator, (list, tuple)) else sample_generators(generator, len(images))
    return torch.cat([_one(images[i : i + 1], generator, rate) for i, generator in enumerate(generators)])

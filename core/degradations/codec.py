"""JPEG compression through kornia's differentiable codec."""

from __future__ import annotations

from typing import Sequence

import torch
from kornia.enhance import jpeg_codec_differentiable

from .registry import register
from .sampling import at_level, lerp, per_sample, unit

JPEG_QUALITY = ((60.0, 70.0), (25.0, 35.0), (5.0, 10.0), (3.0, 5.0), (1.0, 3.0))


@register("compression")
def compression(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """JPEG (4:2:0, standard tables) at quality ~ U(5, 10) at level 3, an integer as encoders take."""
    bounds = at_level(JPEG_QUALITY, level)
    quality = per_sample(generators, lambda g: round(lerp(bounds[::-1], unit(g))))
    return jpeg_codec_differentiable(images, quality.to(device=images.device, dtype=images.dtype))

"""Elastic transform: a small random affine warp plus a smoothed random displacement field."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from .kernels import largest_odd_kernel
from .registry import register
from .sampling import at_level, fields, lerp, unit

ELASTIC_ALPHA = (30.0, 60.0, 100.0, 150.0, 200.0)
ELASTIC_AFFINE = (1.0, 3.0, 5.0, 8.0, 12.0)
ELASTIC_SIGMA = 10.0
# albumentations (approximate=False, its default) smooths the noise with scipy's Gaussian, which
# truncates at 4 sigma.
POOL = 4


def smooth_noise(noise: torch.Tensor) -> torch.Tensor:
    """Gaussian smoothing (sigma ELASTIC_SIGMA, 4-sigma window) of white noise (B, 2, H, W).

    The Gaussian is ~10 px wide, so the noise is first averaged over 4 x 4 blocks, smoothed with
    sigma / 4 and upsampled bilinearly: a field with the same spread (std within ~2 %) and
    correlation length, within ~10 % of the full-size filter's pointwise, for 1/16 of the work."""
    height, width = noise.shape[-2:]
    factor = POOL if min(height, width) >= 8 * POOL else 1
    pooled = F.avg_pool2d(noise, factor, ceil_mode=True) if factor > 1 else noise
    sigma = ELASTIC_SIGMA / factor
    window = min(2 * math.ceil(4 * sigma) + 1, largest_odd_kernel(*pooled.shape[-2:]))
    smoothed = gaussian_blur2d(pooled, window, (sigma, sigma), border_type="reflect")
    if factor == 1:
        return smoothed
    return F.interpolate(smoothed, size=(height, width), mode="bilinear", align_corners=False)


def _affine_from_points(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine maps sending three source points (B, 3, 2) onto three target points."""
    ones = torch.ones(*source.shape[:2], 1, dtype=source.dtype)
    solution = torch.linalg.solve(torch.cat([source, ones], dim=2), target)  # (B, 3, 2)
    return solution.transpose(1, 2)


@register("elastic_transform")
def elastic_transform(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """albumentations-style ElasticTransform (alpha 100, sigma 10, alpha_affine 5 at level 3): three
    points around the centre move by U(-5, 5) px to define an affine warp, then every pixel is
    displaced by alpha * Gaussian-smoothed U(-1, 1) noise. One resampling with reflected borders."""
    alpha, affine_shift = at_level(ELASTIC_ALPHA, level), at_level(ELASTIC_AFFINE, level)
    batch, _, height, width = images.shape
    center = torch.tensor([width // 2, height // 2], dtype=torch.float64)
    square = min(height, width) // 3
    points = torch.stack([center + square, center + torch.tensor([square, -square]), center - square])

    def draw_shift(g: torch.Generator) -> torch.Tensor:
        return torch.tensor([lerp((-affine_shift, affine_shift), unit(g)) for _ in range(6)]).view(3, 2)

    shifts = torch.stack([draw_shift(g) for g in generators]).to(torch.float64)
    sources = points.expand(batch, 3, 2)
    # warpAffine(M) gives out(x) = in(M^-1 x): sample with the map from target back to source points
    inverse = _affine_from_points(sources + shifts, sources).to(images)

    noise = fields(generators, (2, height, width), lambda out, g: out.uniform_(-1.0, 1.0, generator=g), images)
    displacement = smooth_noise(noise)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=images.device, dtype=images.dtype),
        torch.arange(width, device=images.device, dtype=images.dtype),
        indexing="ij",
    )
    x = xs + alpha * displacement[:, 0]
    y = ys + alpha * displacement[:, 1]
    sx = inverse[:, 0, 0, None, None] * x + inverse[:, 0, 1, None, None] * y + inverse[:, 0, 2, None, None]
    sy = inverse[:, 1, 0, None, None] * x + inverse[:, 1, 1, None, None] * y + inverse[:, 1, 2, None, None]
    grid = torch.stack([2 * sx / max(width - 1, 1) - 1, 2 * sy / max(height - 1, 1) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)

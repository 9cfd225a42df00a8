"""Blurs: resampling, motion, zoom and frosted glass."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .kernels import correlate_per_sample, largest_odd_kernel, motion_kernels
from .registry import register
from .sampling import at_level, fields, lerp, odd_sizes, per_sample, unit

RESAMPLING_FACTOR = (2, 3, 4, 6, 8)
MOTION_MAX_KERNEL = (7, 15, 35, 51, 71)
ZOOM_MAX_FACTOR = (1.08, 1.18, 1.33, 1.5, 1.7)
ZOOM_STEP = (0.05, 0.07)
GLASS_RADIUS = (1, 2, 3, 4, 6)


def resample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Downscales by `factor` (area averaging, as OpenCV's INTER_AREA) and scales back up to the
    input size (bilinear)."""
    height, width = images.shape[-2:]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    down = F.interpolate(images, size=small, mode="area")
    return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False)


@register("resampling_blur")
def resampling_blur(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """Down x4 and back up at level 3 (deterministic)."""
    return resample(images, at_level(RESAMPLING_FACTOR, level))


@register("motion_blur")
def motion_blur(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """A straight-line kernel of random odd length in [3, 35] (level 3) at a random angle."""
    max_size = min(at_level(MOTION_MAX_KERNEL, level), largest_odd_kernel(*images.shape[-2:]))
    if max_size < 3:
        return images
    sizes = odd_sizes(generators, 3, max_size)
    angles = per_sample(generators, lambda g: 180.0 * unit(g))
    return correlate_per_sample(images, motion_kernels(sizes, angles, images.device))


@register("zoom_blur")
def zoom_blur(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """Mean of the image and its centre zooms by 1 + k * step < max factor, step ~ U(0.05, 0.07),
    max factor 1.33 at level 3."""
    max_factor = at_level(ZOOM_MAX_FACTOR, level)
    steps = per_sample(generators, lambda g: lerp(ZOOM_STEP, unit(g)))
    counts = torch.ceil((max_factor - 1.0) / steps).long() - 1  # zooms strictly below max_factor
    identity = torch.eye(2, 3, dtype=images.dtype, device=images.device)[None]
    base = F.affine_grid(identity, [1, *images.shape[1:]], align_corners=False)  # (1, H, W, 2)
    total = images.clone()
    for k in range(1, int(counts.max()) + 1):
        active = (counts >= k).nonzero().flatten().tolist()  # samples with fewer zooms are done
        everyone = len(active) == len(images)
        inverse_scale = (1.0 / (1.0 + k * steps[active])).to(images).view(-1, 1, 1, 1)
        zoomed = F.grid_sample(
            images if everyone else images[active],
            base * inverse_scale,
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        if everyone:
            total.add_(zoomed)
        else:
            total[active] += zoomed
    return total.div_((counts.clamp_min(0) + 1).to(images).view(-1, 1, 1, 1))


@register("frosted_glass_blur")
def frosted_glass_blur(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """Every pixel replaced by a random pixel within +-3 px in x and y (level 3), clamped at the border."""
    radius = at_level(GLASS_RADIUS, level)
    batch, channels, height, width = images.shape
    offsets = fields(
        generators, (2, height, width), lambda out, g: out.random_(-radius, radius + 1, generator=g), images,
        dtype=torch.int64,
    )
    rows = (torch.arange(height, device=images.device).view(1, height, 1) + offsets[:, 0]).clamp(0, height - 1)
    cols = (torch.arange(width, device=images.device).view(1, 1, width) + offsets[:, 1]).clamp(0, width - 1)
    source = (rows * width + cols).view(batch, 1, height * width).expand(batch, channels, height * width)
    return images.flatten(2).gather(2, source).view(batch, channels, height, width)

"""Weather: snow, fog and rain, drawn as random fields composited over the image."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from .kernels import cloud_shape, correlate_per_sample, fractal_noise, largest_odd_kernel, motion_kernels, sparse_points
from .photometric import hls_lightness, with_lightness
from .registry import register
from .sampling import at_level, fields, lerp, per_sample, unit

# snow: (snow point range, lightness gain, flake density, flake size range)
SNOW = (
    ((0.05, 0.15), 1.5, 0.15, (0.5, 0.6)),
    ((0.15, 0.35), 2.0, 0.25, (0.55, 0.7)),
    ((0.3, 0.7), 2.5, 0.35, (0.6, 0.8)),
    ((0.5, 0.8), 2.75, 0.45, (0.65, 0.85)),
    ((0.7, 0.9), 3.0, 0.55, (0.7, 0.9)),
)
# fog: (fog coefficient range, cloud alpha)
FOG = (((0.02, 0.05), 0.03), ((0.05, 0.1), 0.05), ((0.1, 0.2), 0.08), ((0.2, 0.3), 0.12), ((0.3, 0.4), 0.16))
# rain: (drop size range, speed range, drop density)
RAIN = (
    ((0.2, 0.3), (0.02, 0.04), 0.003),
    ((0.3, 0.4), (0.03, 0.06), 0.005),
    ((0.4, 0.5), (0.05, 0.1), 0.008),
    ((0.45, 0.55), (0.08, 0.12), 0.012),
    ((0.5, 0.6), (0.1, 0.15), 0.016),
)
# A flake-cell probability of density * FLAKE_RATE; density 0.35 lights ~2.5 % of cells.
FLAKE_RATE = 0.07
SNOW_FALL_KERNEL = 5  # short streaks: flakes drift while the shutter is open
FOG_COLOR = 0.85
RAIN_COLOR = 0.8
RAIN_DARKENING = 0.85
RAIN_MAX_OPACITY = 0.8
FLAKE_OPACITY = 4.0


def _streaked(layer: torch.Tensor, lengths: Sequence[int], angles: torch.Tensor) -> torch.Tensor:
    """Smears particle fields (B, 1, H, W) along per-sample lines of the given odd lengths."""
    return correlate_per_sample(layer, motion_kernels(lengths, angles, layer.device))


@register("snow")
def snow(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """albumentations-style snow point (HLS lightness below p / 2 + 1/3 multiplied by 2.5,
    p ~ U(0.3, 0.7)) plus falling flakes (density 0.35, size ~ U(0.6, 0.8): cells of 1 / (1 - size) px)."""
    point_bounds, gain, density, size_bounds = at_level(SNOW, level)
    _, _, height, width = images.shape
    threshold = per_sample(generators, lambda g: lerp(point_bounds, unit(g)) / 2 + 1 / 3)

    def fill_flakes(out: torch.Tensor, g: torch.Generator) -> None:
        cell = 1.0 / (1.0 - lerp(size_bounds, unit(g)))
        out[0] = sparse_points(g, height, width, cell, density * FLAKE_RATE)

    flakes = fields(generators, (1, height, width), fill_flakes, images)
    angles = per_sample(generators, lambda g: 60.0 + 60.0 * unit(g))  # falling, up to 30 degrees off vertical
    fall = min(SNOW_FALL_KERNEL, largest_odd_kernel(height, width))
    if fall >= 3:
        flakes = _streaked(flakes, [fall] * len(generators), angles)
    alpha = (flakes * FLAKE_OPACITY).clamp(0.0, 1.0)

    lightness = hls_lightness(images)
    below = lightness < threshold.to(images).view(-1, 1, 1, 1)
    brighter = torch.where(below, (lightness * gain).clamp(max=1.0), lightness)
    snowy = with_lightness(images, lightness, brighter)
    return snowy.mul_(1 - alpha).add_(alpha)


@register("fog")
def fog(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """Blends towards grey-white with opacity fog_coef * 2 + cloud_alpha * 4 * cloud, where cloud is
    fractal noise in [0, 1] (fog coefficient ~ U(0.1, 0.2), alpha 0.08 at level 3), then softens
    the image under the fog in proportion to its density."""
    coef_bounds, cloud_alpha = at_level(FOG, level)
    _, _, height, width = images.shape
    coef = per_sample(generators, lambda g: lerp(coef_bounds, unit(g))).to(images).view(-1, 1, 1, 1)
    shape = cloud_shape(height, width)
    coarse = fields(generators, (1, *shape), lambda out, g: out[0].copy_(fractal_noise(g, shape)), images)
    cloud = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    opacity = (coef * 2.0 + cloud_alpha * 4.0 * cloud).clamp(0.0, 1.0)
    # fog scatters light: blur what is behind it, more where the fog is dense
    softened = gaussian_blur2d(images, 5, (1.5, 1.5))
    behind = images + (softened - images) * (opacity * 2.0).clamp(max=1.0)
    return behind * (1 - opacity) + FOG_COLOR * opacity


@register("rain")
def rain(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """Darkens the scene and adds streaks: drops on cells of 1 / (1 - size) px (size ~ U(0.4, 0.5)),
    smeared along lines of speed * min(H, W) px (speed ~ U(0.05, 0.1)) within 15 degrees of vertical."""
    size_bounds, speed_bounds, density = at_level(RAIN, level)
    _, _, height, width = images.shape
    units = per_sample(generators, unit)  # one variate for drop size and speed: severity stays monotone

    cells = iter([1.0 / (1.0 - lerp(size_bounds, float(u))) for u in units])

    def fill_drops(out: torch.Tensor, g: torch.Generator) -> None:
        out[0] = sparse_points(g, height, width, next(cells), density)

    drops = fields(generators, (1, height, width), fill_drops, images)
    longest = largest_odd_kernel(height, width)
    lengths = [min(longest, 2 * round(lerp(speed_bounds, float(u)) * min(height, width) / 2) + 1) for u in units]
    angles = per_sample(generators, lambda g: 75.0 + 30.0 * unit(g))
    if max(lengths) >= 3:
        drops = _streaked(drops, lengths, angles)
    # a streak spreads each drop over its length: scale back up so streak cores stay visible
    spread = torch.tensor(lengths, dtype=images.dtype, device=images.device).view(-1, 1, 1, 1)
    alpha = (drops * spread).clamp(0.0, RAIN_MAX_OPACITY)
    return images * RAIN_DARKENING * (1 - alpha) + RAIN_COLOR * alpha

"""Per-pixel photometric degradations: brightness, contrast, colour jitter and the three noises."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from kornia.enhance import adjust_contrast_with_mean_subtraction, adjust_saturation_with_gray_subtraction

from .registry import register
from .sampling import at_level, fields, lerp, per_sample, poisson, unit

# Ranges per severity level 1..5; index 2 (level 3) is the published setting.
BRIGHTNESS_FACTOR = ((0.9, 0.95), (0.8, 0.9), (0.6, 0.8), (0.45, 0.6), (0.3, 0.45))
CONTRAST_FACTOR = ((1.15, 1.25), (1.3, 1.45), (1.6, 1.7), (1.9, 2.1), (2.3, 2.6))
GAUSS_VARIANCE = ((30.0, 40.0), (100.0, 110.0), (250.0, 260.0), (500.0, 520.0), (1000.0, 1040.0))  # 0-255 scale
ISO_COLOR_SHIFT = ((0.05, 0.1), (0.2, 0.3), (0.4, 0.5), (0.5, 0.6), (0.6, 0.7))
ISO_INTENSITY = ((0.2, 0.3), (0.4, 0.5), (0.7, 0.8), (0.9, 1.0), (1.1, 1.2))
MULTIPLIER = ((1.1, 1.15), (1.2, 1.3), (1.4, 1.5), (1.6, 1.8), (1.9, 2.2))
# colour jitter amplitudes (brightness, contrast, saturation, hue); the published hue 0.7 exceeds
# half a turn, so hue shifts are drawn in [-0.7, 0.7] turns and wrap around the colour circle.
JITTER = (
    (0.2, 0.1, 0.2, 0.1),
    (0.4, 0.2, 0.4, 0.3),
    (0.7, 0.3, 0.7, 0.7),
    (0.8, 0.45, 0.85, 0.7),
    (0.9, 0.6, 1.0, 0.7),
)
CONTRAST_PIVOT = 128.0 / 255.0


def _batch(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) CPU values -> (B, 1, 1, 1) on `like`'s device and dtype."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


@register("brightness")
def brightness(
    images: torch.Tensor, generators: Sequence[torch.Generator], level: int, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """x * f, f ~ U(0.6, 0.8) at level 3."""
    bounds = at_level(BRIGHTNESS_FACTOR, level)
    # lower factors are stronger: map u to the top of the range first so severity is monotone per seed
    factor = per_sample(generators, lambda g: lerp(bounds[::-1], unit(g)))
    return torch.mul(images, _batch(factor, images), out=out)


@register("contrast")
def contrast(
    images: torch.Tensor, generators: Sequence[torch.Generator], level: int, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """(x - 128/255) * c + 128/255, c ~ U(1.6, 1.7) at level 3."""
    bounds = at_level(CONTRAST_FACTOR, level)
    factor = _batch(per_sample(generators, lambda g: lerp(bounds, unit(g))), images)
    # x * c + pivot * (1 - c): two passes over the pixels (addcmul's three-way broadcast is slower)
    return torch.mul(images, factor, out=out).add_(CONTRAST_PIVOT * (1 - factor))


@register("gauss_noise")
def gauss_noise(
    images: torch.Tensor, generators: Sequence[torch.Generator], level: int, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Adds N(0, var) per pixel and channel, var ~ U(250, 260) on the 0-255 scale at level 3."""
    bounds = at_level(GAUSS_VARIANCE, level)
    stds = []

    def fill(sample: torch.Tensor, g: torch.Generator) -> None:
        stds.append(math.sqrt(lerp(bounds, unit(g))) / 255.0)
        sample.normal_(generator=g)

    noise = fields(generators, images.shape[1:], fill, images, out=out)
    return noise.mul_(_batch(torch.tensor(stds), images)).add_(images)


@register("ISO_noise")
def iso_noise(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """Camera-sensor noise in HLS (the albumentations ISONoise model): Gaussian hue noise of std
    color_shift * intensity turns, and Poisson lightness noise with mean std(L) * intensity * 255
    (0-255 scale) added in proportion to 1 - L. color_shift ~ U(0.4, 0.5), intensity ~ U(0.7, 0.8).

    No HLS round trip: turning the hue keeps each pixel's largest and smallest channel, hence its
    lightness and saturation, and `with_lightness` then sets the lightness alone."""
    shift_bounds, intensity_bounds = at_level(ISO_COLOR_SHIFT, level), at_level(ISO_INTENSITY, level)
    _, _, height, width = images.shape
    lightness = hls_lightness(images)
    stds = iter(lightness.flatten(1).std(dim=1).cpu().tolist())

    def fill(out: torch.Tensor, g: torch.Generator) -> None:
        u = unit(g)
        color_shift, intensity = lerp(shift_bounds, u), lerp(intensity_bounds, u)
        out[0].normal_(generator=g).mul_(color_shift * intensity)
        # the rate depends on the image; rounding it keeps device/batch float differences (~1e-7)
        # from changing Poisson draws, so CPU, GPU and one-by-one runs draw the same counts
        rate = round(next(stds) * intensity * 255.0, 2)
        out[1] = poisson(g, rate, (height, width)).div_(255.0)

    noise = fields(generators, (2, height, width), fill, images)
    brighter = torch.addcmul(lightness, noise[:, 1:], 1.0 - lightness).clamp_(0.0, 1.0)
    return with_lightness(rotate_hue(images, noise[:, 0]), lightness, brighter)


@register("impulse_noise")
def impulse_noise(
    images: torch.Tensor, generators: Sequence[torch.Generator], level: int, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Multiplicative noise, as published under this name: every pixel and channel times its own
    multiplier ~ U(1.4, 1.5) at level 3."""
    low, high = at_level(MULTIPLIER, level)
    draw = lambda sample, g: sample.uniform_(low, high, generator=g)  # noqa: E731
    return fields(generators, images.shape[1:], draw, images, out=out).mul_(images)


def hls_lightness(images: torch.Tensor) -> torch.Tensor:
    """HLS lightness (B, 1, H, W) of RGB images (B, 3, H, W): the mean of the largest and smallest channel."""
    return (images.amax(dim=1, keepdim=True) + images.amin(dim=1, keepdim=True)) / 2


def with_lightness(images: torch.Tensor, lightness: torch.Tensor, new_lightness: torch.Tensor) -> torch.Tensor:
    """Sets the HLS lightness of RGB images (B, 3, H, W) to `new_lightness` (B, 1, H, W), keeping hue
    and HLS saturation, without a colour-space round trip: with chroma = S * (1 - |2L - 1|), every
    channel is L + (c - L) * chroma' / chroma."""
    spread = 1 - (2 * lightness - 1).abs()
    ratio = (1 - (2 * new_lightness - 1).abs()) / spread.clamp_min(1e-6)
    ratio = torch.where(spread > 1e-6, ratio, torch.zeros_like(ratio))  # black or white: no chroma
    return (images - lightness).mul_(ratio).add_(new_lightness)


def rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Adds turns, (B,) per image or (B, H, W) per pixel, of a full circle to the HSV (= HLS) hue of
    images (B, 3, H, W), keeping each pixel's largest and smallest channel: kornia's `adjust_hue`
    to 1e-6, in half the time (no HSV tensors are built)."""
    red, green, blue = images.unbind(1)
    value = images.amax(dim=1)
    chroma = value - images.amin(dim=1)
    safe = chroma.clamp_min(1e-12)  # grey pixels: any hue, chroma 0 gives value on every channel
    hue = torch.where(
        value == red,
        torch.remainder((green - blue) / safe, 6),
        torch.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = torch.remainder(hue + 6 * (turns.view(-1, 1, 1) if turns.dim() == 1 else turns), 6)
    channels = []
    for offset in (5.0, 3.0, 1.0):  # red, green, blue in the standard HSV -> RGB formula
        k = torch.remainder(hue + offset, 6)
        channels.append(value - chroma * torch.minimum(k, 4 - k).clamp_(0, 1))
    return torch.stack(channels, dim=1)


@register("color_jitter")
def color_jitter(images: torch.Tensor, generators: Sequence[torch.Generator], level: int) -> torch.Tensor:
    """torchvision-style jitter in a fixed order: brightness x U(1 - 0.7, 1 + 0.7), contrast about
    the grey mean x U(0.7, 1.3), saturation (blend with grey) x U(0.3, 1.7), hue + U(-0.7, 0.7)
    turns (level 3)."""
    amplitudes = at_level(JITTER, level)

    def draw(g: torch.Generator) -> torch.Tensor:
        # signed unit offsets in [-1, 1]; factor = 1 + offset * amplitude
        return torch.rand(4, generator=g, dtype=torch.float64) * 2 - 1

    offsets = torch.stack([draw(g) for g in generators]) * torch.tensor(amplitudes, dtype=torch.float64)
    factors = (1 + offsets[:, :3]).to(device=images.device, dtype=images.dtype)
    hue_turns = offsets[:, 3].to(device=images.device, dtype=images.dtype)  # wraps around the circle
    out = (images * factors[:, 0].view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
    out = adjust_contrast_with_mean_subtraction(out, factors[:, 1]).clamp_(0.0, 1.0)
    out = adjust_saturation_with_gray_subtraction(out, factors[:, 2]).clamp_(0.0, 1.0)
    return rotate_hue(out, hue_turns)

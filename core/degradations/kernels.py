"""Filtering with one kernel per sample, motion kernels and random fields shared by several types."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from kornia.filters import filter2d, get_motion_kernel2d

DIRECT_MAX_KERNEL = 11
# Above this many pixels per plane the FFT beats kornia's direct filter2d on the CPU even for 5x5
# kernels (1.8-2.4x on a 1024x1024 colour image, benchmarks/bench_choices.py; at 640x640 and below
# the direct filter won in one-off timings). Single-channel fields (snow's flakes) take the FFT at
# any size: oneDNN's one-channel-per-group convolution was 2.1-2.7x slower at 1024x1024 and no
# faster at 512x512.
DIRECT_MAX_PIXELS = 640 * 640


def correlate_per_sample(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlates each image with its own odd square kernel, reflecting at the borders.

    images (B, C, H, W), kernels (B, k, k) -> (B, C, H, W). Colour images up to DIRECT_MAX_PIXELS
    with kernels up to DIRECT_MAX_KERNEL go to kornia's direct `filter2d`; the rest use the FFT,
    whose cost does not grow with k: motion-blur and rain kernels reach 35-80 px, where direct
    correlation is 10-50x slower.
    """
    batch, channels, height, width = images.shape
    size = kernels.shape[-1]
    if size <= DIRECT_MAX_KERNEL and channels > 1 and height * width <= DIRECT_MAX_PIXELS:
        return filter2d(images, kernels.to(images.dtype), border_type="reflect")
    pad = size // 2
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    # Zeros after the padded image change nothing in the window kept (no output reads past the
    # padding) and let the FFT run on a fast length: 1058 (1024 + a 35 px kernel) = 2 * 23^2 took
    # 2.3-3.4x as long to transform as 1080 (benchmarks/bench_choices.py).
    fft_shape = tuple(fast_fft_length(n) for n in padded.shape[-2:])
    spectrum = torch.fft.rfft2(padded, s=fft_shape)
    kernel_spectrum = torch.fft.rfft2(kernels.to(images.dtype), s=fft_shape)
    # conj turns the product into a circular cross-correlation; the valid window starts at (0, 0).
    out = torch.fft.irfft2(spectrum * kernel_spectrum.conj()[:, None], s=fft_shape)
    return out[..., :height, :width]


def fast_fft_length(n: int) -> int:
    """The smallest length >= n with no prime factor above 5, where pocketfft is fastest."""
    length = n
    while True:
        rest = length
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return length
        length += 1


def motion_kernels(sizes: Sequence[int], angles: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, K, K) line kernels summing to 1, K = max(sizes); kernel i has length sizes[i] (odd) and is
    turned by angles[i] degrees counter-clockwise from horizontal, centred in K x K."""
    full = max(sizes)
    kernels = torch.zeros(len(sizes), full, full)
    for i, size in enumerate(sizes):
        line = get_motion_kernel2d(size, angles[i : i + 1].float(), torch.zeros(1))[0]
        offset = (full - size) // 2
        kernels[i, offset : offset + size, offset : offset + size] = line
    return (kernels / kernels.sum(dim=(1, 2), keepdim=True)).to(device)


def largest_odd_kernel(height: int, width: int) -> int:
    """The largest odd kernel size whose reflect padding fits in an image of this size."""
    side = min(height, width)
    return max(1, side - 1 if side % 2 == 0 else side - 2)


CLOUD_GRID = 64  # cells across the short side of the grid clouds are built on; finest octave: 32


def cloud_shape(height: int, width: int) -> Tuple[int, int]:
    """The size of the coarse grid `fractal_noise` fills for an image of this size."""
    short = min(height, width)
    return max(2, round(CLOUD_GRID * height / short)), max(2, round(CLOUD_GRID * width / short))


def fractal_noise(generator: torch.Generator, shape: Tuple[int, int], octaves: int = 5) -> torch.Tensor:
    """(h, w) cloud-like noise in [0, 1] on a coarse grid (see `cloud_shape`): random grids of 2, 4,
    8, ... cells across the short side, upsampled bilinearly and summed with amplitudes 1, 1/2,
    1/4, ..., then min-max normalised. Callers upsample it to the image: clouds are smooth."""
    total = torch.zeros(1, 1, *shape)
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        grid_shape = (max(2, shape[0] * cells // CLOUD_GRID), max(2, shape[1] * cells // CLOUD_GRID))
        grid = torch.rand(1, 1, *grid_shape, generator=generator)
        total += F.interpolate(grid, size=shape, mode="bilinear", align_corners=False) / 2**octave
    low, high = total.min(), total.max()
    return ((total - low) / (high - low).clamp_min(1e-6))[0, 0]


def sparse_points(generator: torch.Generator, height: int, width: int, cell: float, density: float) -> torch.Tensor:
    """(H, W) particle field: a grid of cells of about `cell` px, each lit with probability
    `density` at a random intensity in [0.5, 1], upsampled bilinearly so particles are ~2 cells wide."""
    grid_h = max(1, round(height / cell))
    grid_w = max(1, round(width / cell))
    lit = (torch.rand(grid_h, grid_w, generator=generator) < density).float()
    strength = 0.5 + 0.5 * torch.rand(grid_h, grid_w, generator=generator)
    field = (lit * strength)[None, None]
    return F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)[0, 0]

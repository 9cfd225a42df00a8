"""The random pieces of Real-ESRGAN's degradation model (Wang et al., 2021), which LQSeg builds on: the
mixed blur kernels, the circular low-pass (sinc) kernel, Gaussian / Poisson noise with a gray option,
and random resizing. Every draw comes from one CPU generator per sample (see `registry`).

Kernels follow `basicsr.data.degradations` (`random_mixed_kernels`, `circular_lowpass_kernel`): a
bivariate Gaussian, generalized Gaussian (exp(-0.5 q^beta)) or plateau (1 / (1 + q^beta)) of the
quadratic form q = x^T Sigma^-1 x, isotropic or rotated anisotropic, normalised to sum 1.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale

from .kernels import correlate_per_sample, largest_odd_kernel
from .sampling import Range, lerp, unit

KERNEL_SIZES = tuple(range(7, 22, 2))  # Real-ESRGAN's kernel_range: odd sizes 7..21
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_PROBABILITIES = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
SINC_PROBABILITY = 0.1
GENERALIZED_BETA: Range = (0.5, 4.0)
PLATEAU_BETA: Range = (1.0, 2.0)
RESIZE_MODES = ("area", "bilinear", "bicubic")


def choose(generator: torch.Generator, probabilities: Sequence[float]) -> int:
    """The index drawn with the given probabilities (they sum to 1)."""
    u, total = unit(generator), 0.0
    for index, probability in enumerate(probabilities):
        total += probability
        if u < total:
            return index
    return len(probabilities) - 1


def pick(generator: torch.Generator, options: Sequence):
    """One of `options`, uniformly."""
    return options[min(int(unit(generator) * len(options)), len(options) - 1)]


def _grid(size: int) -> torch.Tensor:
    """(size, size, 2) float64 offsets (x, y) from the kernel's centre."""
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """x^T Sigma^-1 x over the kernel grid, Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T."""
    cos, sin = math.cos(theta), math.sin(theta)
    rotation = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    sigma = rotation @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rotation.T
    grid = _grid(size)
    return torch.einsum("...i,ij,...j->...", grid, torch.linalg.inv(sigma), grid)


def _beta(generator: torch.Generator, bounds: Range) -> float:
    """basicsr's shape draw: below 1 or above 1 with equal odds."""
    if unit(generator) < 0.5:
        return lerp((bounds[0], 1.0), unit(generator))
    return lerp((1.0, bounds[1]), unit(generator))


def mixed_kernel(generator: torch.Generator, size: int, sigma: Range) -> torch.Tensor:
    """`random_mixed_kernels`: one (size, size) float64 kernel of a type drawn with KERNEL_PROBABILITIES."""
    kind = KERNEL_TYPES[choose(generator, KERNEL_PROBABILITIES)]
    sigma_x = lerp(sigma, unit(generator))
    if kind.endswith("aniso"):
        sigma_y, theta = lerp(sigma, unit(generator)), lerp((-math.pi, math.pi), unit(generator))
    else:
        sigma_y, theta = sigma_x, 0.0
    form = _quadratic_form(size, sigma_x, sigma_y, theta)
    if kind.startswith("generalized"):
        kernel = torch.exp(-0.5 * form ** _beta(generator, GENERALIZED_BETA))
    elif kind.startswith("plateau"):
        kernel = 1 / (form ** _beta(generator, PLATEAU_BETA) + 1)
    else:
        kernel = torch.exp(-0.5 * form)
    return kernel / kernel.sum()


def sinc_kernel(cutoff: float, size: int) -> torch.Tensor:
    """`circular_lowpass_kernel`: the ideal 2-D low-pass filter of angular `cutoff` on a (size, size)
    grid, cutoff * J1(cutoff r) / (2 pi r), normalised to sum 1 (float64)."""
    radius = _grid(size).norm(dim=-1)
    safe = radius.clamp(min=1e-12)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(radius == 0, torch.full_like(kernel, cutoff**2 / (4 * math.pi)), kernel)
    return kernel / kernel.sum()


def blur_kernel(generator: torch.Generator, sigma: Range) -> torch.Tensor:
    """The kernel of one blur step: a sinc kernel with probability SINC_PROBABILITY, else a mixed one."""
    size = pick(generator, KERNEL_SIZES)
    if unit(generator) < SINC_PROBABILITY:
        cutoff = lerp((math.pi / 3, math.pi) if size < 13 else (math.pi / 5, math.pi), unit(generator))
        return sinc_kernel(cutoff, size)
    return mixed_kernel(generator, size, sigma)


def final_sinc_kernel(generator: torch.Generator) -> torch.Tensor:
    """The final low-pass filter: cutoff in [pi/3, pi] at a random size."""
    size = pick(generator, KERNEL_SIZES)
    return sinc_kernel(lerp((math.pi / 3, math.pi), unit(generator)), size)


def filter_image(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) correlated with `kernel` (reflected borders); a kernel wider than the image allows is
    cut to its centre and renormalised."""
    limit = largest_odd_kernel(*image.shape[-2:])
    if kernel.shape[-1] > limit:
        trim = (kernel.shape[-1] - limit) // 2
        kernel = kernel[trim:-trim, trim:-trim]
        kernel = kernel / kernel.sum()
    if kernel.shape[-1] < 2:
        return image
    return correlate_per_sample(image, kernel[None].to(image))


def resize(image: torch.Tensor, size: Tuple[int, int], mode: str) -> torch.Tensor:
    """(1, 3, h, w) -> (1, 3, size) with `mode` (area, bilinear or bicubic); sides at least 1."""
    size = (max(1, size[0]), max(1, size[1]))
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def add_noise(image: torch.Tensor, generator: torch.Generator, gaussian_probability: float, gaussian: Range,
              poisson: Range, gray_probability: float) -> torch.Tensor:
    """Gaussian noise (sigma in `gaussian` / 255) or, otherwise, Poisson noise of an 8-bit image scaled by
    a factor in `poisson`; the same noise on all channels with probability `gray_probability`; clipped."""
    use_gaussian = unit(generator) < gaussian_probability
    scale = lerp(gaussian if use_gaussian else poisson, unit(generator))
    gray = unit(generator) < gray_probability
    shape = (1, 1 if gray else 3, *image.shape[-2:])
    if use_gaussian:
        noise = torch.randn(shape, generator=generator, dtype=torch.float64) * (scale / 255)
    else:
        levels = 256.0  # basicsr: 2 ** ceil(log2(distinct values)), 256 for any natural 8-bit image
        base = image.double().cpu().clamp(0, 1)
        base = rgb_to_grayscale(base) if gray else base  # basicsr draws gray Poisson noise on the gray image
        noise = (torch.poisson(base * levels, generator=generator) / levels - base) * scale
    return (image + noise.to(image).expand_as(image)).clamp(0, 1)

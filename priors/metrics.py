"""PSNR and SSIM with the restoration papers' conventions.

Both take (H, W, 3) RGB arrays on the uint8 scale (uint8, or floats in 0..255), no border crop.
SSIM: Gaussian window 11 x 11, sigma 1.5, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, computed on each
RGB channel over the 'valid' window positions (no padding, as BasicSR/NAFNet's 2-D SSIM), the
per-channel means then averaged. Datasets are scored as the mean of per-image values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _as_float(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"{name} must be (H, W, C), got shape {image.shape}")
    return image


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """10 log10(255^2 / MSE) over all pixels and channels; inf for identical images."""
    image, reference = _as_float(image, "image"), _as_float(reference, "reference")
    if image.shape != reference.shape:
        raise ValueError(f"shapes differ: {image.shape} vs {reference.shape}")
    mse = float(np.mean((image - reference) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """(size, size) normalised Gaussian window (outer product of the 1-D one)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    line = np.exp(-(offsets**2) / (2 * sigma**2))
    line /= line.sum()
    return np.outer(line, line)


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """Mean SSIM per channel over the valid 11 x 11 window positions, averaged over channels."""
    image, reference = _as_float(image, "image"), _as_float(reference, "reference")
    if image.shape != reference.shape:
        raise ValueError(f"shapes differ: {image.shape} vs {reference.shape}")
    if min(image.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11 pixels, got {image.shape[:2]}")
    window = torch.from_numpy(gaussian_window())[None, None]
    x = torch.from_numpy(image).permute(2, 0, 1)[:, None]  # channels as a batch of 1-channel maps
    y = torch.from_numpy(reference).permute(2, 0, 1)[:, None]
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return float(ssim_map.mean(dim=(1, 2, 3)).mean())

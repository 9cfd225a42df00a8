"""Classical restoration baselines: dark-channel-prior dehazing and deconvolution with a known kernel.

Dehazing follows He, Sun and Tang (CVPR 2009 / TPAMI 2011) with the guided-filter refinement of the
transmission (kornia's `guided_blur`). Deblurring calls scikit-image's Wiener and Richardson-Lucy
deconvolution (the `restoration` extra) after reflect-padding by four kernel sizes: both assume
circular (FFT) or zero-padded convolution, and the mismatch rings from the borders inwards (a
one-kernel margin lost ~1 dB against four on 64 px test scenes).
All functions take and return (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import guided_blur


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float64 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double() / 255.0


def _to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(1, 3, H, W) tensor or (H, W, 3) array in [0, 1] -> (H, W, 3) uint8."""
    if isinstance(image, torch.Tensor):
        image = image[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def dark_channel(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): the minimum over the channels and a `patch` x `patch` window."""
    pad = patch // 2
    darkest = image.amin(dim=1, keepdim=True)
    padded = F.pad(darkest, (pad, pad, pad, pad), mode="replicate")
    return -F.max_pool2d(-padded, patch, stride=1)


def atmospheric_light(image: torch.Tensor, dark: torch.Tensor, fraction: float = 0.001) -> torch.Tensor:
    """(1, 3, H, W), its dark channel -> (3,): the mean colour of the haziest `fraction` of pixels
    (the brightest of the dark channel), He et al.'s estimate averaged for stability."""
    count = max(1, int(round(fraction * dark.numel())))
    haziest = dark.flatten().topk(count).indices
    return image.flatten(2)[0][:, haziest].mean(dim=1)


def dark_channel_dehaze(
    image: np.ndarray,
    patch: int = 15,
    omega: float = 0.95,
    t_min: float = 0.1,
    guide_radius: int = 30,
    guide_eps: float = 1e-3,
) -> np.ndarray:
    """Dark-channel-prior dehazing of one hazy image (He et al.'s defaults for a ~600 px image).

    t = 1 - omega * dark(I / A), refined by a guided filter on the grayscale image, then
    J = (I - A) / max(t, t_min) + A.
    """
    hazy = _to_tensor(image)
    light = atmospheric_light(hazy, dark_channel(hazy, patch))
    normalised = hazy / light.clamp(min=1e-6)[None, :, None, None]
    transmission = 1.0 - omega * dark_channel(normalised, patch)
    gray = hazy.mean(dim=1, keepdim=True)
    size = 2 * guide_radius + 1
    transmission = guided_blur(gray, transmission, (size, size), guide_eps, border_type="reflect")
    clear = (hazy - light[None, :, None, None]) / transmission.clamp(min=t_min) + light[None, :, None, None]
    return _to_uint8(clear.clamp(0, 1))


def _deconvolve(image: np.ndarray, kernel: np.ndarray, method) -> np.ndarray:
    """Runs `method(channel, psf)` on each reflect-padded channel in [0, 1] and crops the padding."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"the blur kernel must be an odd square (k, k) array, got shape {kernel.shape}")
    pad = 4 * kernel.shape[0]
    padded = np.pad(image.astype(np.float64) / 255.0, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    # The blur was a correlation with `kernel`; deconvolution wants the convolution's kernel.
    psf = kernel[::-1, ::-1] / kernel.sum()
    channels = [method(padded[..., c], psf) for c in range(padded.shape[-1])]
    return _to_uint8(np.stack(channels, axis=-1)[pad:-pad, pad:-pad])


def wiener_deblur(image: np.ndarray, kernel: np.ndarray, balance: float = 0.03) -> np.ndarray:
    """Wiener deconvolution with the true (k, k) blur kernel (the image was correlated with it)."""
    from skimage.restoration import wiener

    return _deconvolve(image, kernel, lambda channel, psf: wiener(channel, psf, balance))


def richardson_lucy_deblur(image: np.ndarray, kernel: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Richardson-Lucy deconvolution with the true (k, k) blur kernel (the image was correlated with it)."""
    from skimage.restoration import richardson_lucy

    return _deconvolve(image, kernel, lambda channel, psf: richardson_lucy(channel, psf, num_iter=iterations))

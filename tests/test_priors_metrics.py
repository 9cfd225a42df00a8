"""PSNR and SSIM on crafted images with known values."""

import math

import numpy as np
import pytest

from priors.metrics import gaussian_window, psnr, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def test_psnr_constant_offset_is_exact():
    rng = np.random.default_rng(0)
    clean = rng.integers(10, 240, size=(20, 30, 3)).astype(np.uint8)
    assert psnr(clean + np.uint8(5), clean) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)
    assert psnr(clean, clean) == math.inf
    shifted = clean.astype(np.int16)
    shifted[..., 0] += 3  # one channel of three off by 3: MSE = 9 / 3
    assert psnr(shifted, clean) == pytest.approx(10 * math.log10(255**2 / 3), abs=1e-12)


def test_gaussian_window():
    window = gaussian_window()
    assert window.shape == (11, 11) and window.sum() == pytest.approx(1.0)
    assert window[5, 6] / window[5, 5] == pytest.approx(math.exp(-1 / (2 * 1.5**2)))


def test_ssim_identical_is_one():
    image = np.random.default_rng(1).integers(0, 256, size=(24, 19, 3)).astype(np.uint8)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_luminance_only():
    a, b = 100.0, 140.0
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b)) == pytest.approx(expected, abs=1e-12)


def test_ssim_equals_hand_computed_windows_and_channel_average():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, size=(13, 12, 3))
    y = np.clip(x + rng.normal(0, 25, size=x.shape), 0, 255)
    y[..., 2] = 255 - x[..., 2]  # a very different third channel
    w = gaussian_window()
    per_channel = []
    for c in range(3):
        values = []
        for i in range(13 - 10):
            for j in range(12 - 10):
                px, py = x[i : i + 11, j : j + 11, c], y[i : i + 11, j : j + 11, c]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cov = (w * (px - mx) * (py - my)).sum()
                values.append((2 * mx * my + C1) * (2 * cov + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
        per_channel.append(np.mean(values))
    assert per_channel[2] < 0  # anticorrelated channel
    assert ssim(x, y) == pytest.approx(np.mean(per_channel), abs=1e-10)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError):
        ssim(np.zeros((10, 12, 3)), np.zeros((10, 12, 3)))

"""The CPU choices that comments in core/ justify, each timed against the alternative it replaced,
in one run on one torch thread (median of --repeats after a warm-up):

    python3 benchmarks/bench_choices.py [--repeats 7]

Rows: `degrade`'s reused output buffer, mask PNG compression, FFT lengths, direct against FFT
correlation at 1024x1024, Poisson draws, planar layout, CPU chunk size, ISO_noise's colour maths,
the Fourier filter's unguarded path, and one choice not taken: compiling color_jitter. A fresh
50 MB output costs page faults that glibc's allocator state decides: the output-buffer row runs
first, as in a fresh `robustsam degrade` process; after other large allocations it shrinks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

import imageio.v3 as iio
import numpy as np
import torch
from kornia.color import hls_to_rgb, rgb_to_hls
from kornia.enhance import adjust_contrast_with_mean_subtraction, adjust_saturation_with_gray_subtraction
from kornia.filters import filter2d

from core.degradations import degrade, registry
from core.degradations.kernels import correlate_per_sample, fast_fft_length
from core.degradations.photometric import hls_lightness, rotate_hue, with_lightness
from core.degradations.sampling import poisson
from core.io import MASK_PNG_LEVEL
from core.model.modules import FourierAmplitudeFilter

Case = Tuple[str, str, Callable[[], object], str, Callable[[], object]]


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def mask_png(folder: Path) -> Case:
    """A detailed 640x480 mask (4 px blocks on and off at random), like a random-weight model's."""
    rng = np.random.default_rng(0)
    mask = np.kron(rng.random((120, 160)) > 0.5, np.ones((4, 4), bool)).astype(np.uint8) * 255

    def write(level: int) -> Callable[[], object]:
        return lambda: iio.imwrite(folder / f"mask{level}.png", mask, extension=".png", compress_level=level)

    return ("mask PNG, 640x480", "zlib level 6 (Pillow's default)", write(6), f"level {MASK_PNG_LEVEL}", write(MASK_PNG_LEVEL))


def fft_length() -> Case:
    """A 1024 image reflect-padded for a 35 px kernel: 1058 = 2 * 23^2 against the next 5-smooth length."""
    slow, fast = torch.rand(2, 3, 1058, 1058), torch.rand(2, 3, fast_fft_length(1058), fast_fft_length(1058))

    def round_trip(x: torch.Tensor) -> Callable[[], object]:
        return lambda: torch.fft.irfft2(torch.fft.rfft2(x), s=x.shape[-2:])

    return ("rfft2 + irfft2, 2x3 images", "1058 x 1058", round_trip(slow), f"{fast.shape[-1]} x {fast.shape[-1]}", round_trip(fast))


def correlation(channels: int, batch: int) -> Case:
    """Per-sample 5x5 kernels over 1024x1024 planes: snow's streaked flake fields (one channel) or a
    short motion blur (three). `correlate_per_sample` takes the FFT for both."""
    images, kernels = torch.rand(batch, channels, 1024, 1024), torch.rand(batch, 5, 5)
    return (
        f"{channels}-channel 5x5 correlation, {batch}x1024x1024",
        "kornia filter2d (direct)",
        lambda: filter2d(images, kernels, border_type="reflect"),
        "correlate_per_sample (FFT)",
        lambda: correlate_per_sample(images, kernels),
    )


def poisson_draws() -> Case:
    """512x512 Poisson counts of rate 55 (ISO_noise at level 3 on a typical image)."""
    rate, shape = 55.0, (512, 512)
    counts = torch.arange(int(rate + 12 * math.sqrt(rate) + 12) + 1, dtype=torch.float64)
    cdf = torch.cumsum(torch.exp(counts * math.log(rate) - rate - torch.lgamma(counts + 1)), 0).float()
    generator = torch.Generator().manual_seed(0)
    return (
        "Poisson counts, 512x512",
        "binary search per pixel",
        lambda: torch.searchsorted(cdf, torch.rand(*shape, generator=generator)),
        "65536-level table",
        lambda: poisson(generator, rate, shape),
    )


def output_buffer() -> Case:
    images, out = torch.rand(16, 3, 512, 512), torch.empty(16, 3, 512, 512)
    return (
        "brightness, 16x512x512",
        "new output per call",
        lambda: degrade(images, "brightness", generator=torch.Generator().manual_seed(0)),
        "reused out=",
        lambda: degrade(images, "brightness", generator=torch.Generator().manual_seed(0), out=out),
    )


def planar_layout() -> Case:
    planar = torch.rand(16, 3, 512, 512)
    interleaved = planar.contiguous(memory_format=torch.channels_last)  # a permuted (H, W, 3) array
    interleaved_out = torch.empty_like(interleaved)  # what the benchmark and CLI used to reuse
    planar_out = torch.empty_like(planar)
    return (
        "gauss_noise, 16x512x512",
        "channels-last images and output",
        lambda: degrade(interleaved, "gauss_noise", generator=torch.Generator().manual_seed(0), out=interleaved_out),
        "planar",
        lambda: degrade(planar, "gauss_noise", generator=torch.Generator().manual_seed(0), out=planar_out),
    )


def chunk_size() -> Case:
    images, out = torch.rand(4, 3, 1024, 1024), torch.empty(4, 3, 1024, 1024)

    def run(pixels: int) -> Callable[[], object]:
        def call() -> None:
            registry.CPU_CHUNK_PIXELS, saved = pixels, registry.CPU_CHUNK_PIXELS
            try:
                degrade(images, "zoom_blur", generator=torch.Generator().manual_seed(0), out=out)
            finally:
                registry.CPU_CHUNK_PIXELS = saved

        return call

    return ("zoom_blur, 4x1024x1024", "2 images per CPU step", run(2 * 1024 * 1024), "1 (CPU_CHUNK_PIXELS)", run(registry.CPU_CHUNK_PIXELS))


def iso_colour() -> Case:
    """ISO_noise's colour step: a per-pixel hue turn and a new lightness, on 2x512x512 images."""
    images = torch.rand(2, 3, 512, 512)
    turns = 0.3 * torch.randn(2, 512, 512)
    gain = 0.2 * torch.rand(2, 1, 512, 512)

    def round_trip() -> torch.Tensor:
        hls = rgb_to_hls(images)
        hue = torch.remainder(hls[:, :1] + turns[:, None] * 2 * math.pi, 2 * math.pi)
        lightness = (hls[:, 1:2] + gain * (1 - hls[:, 1:2])).clamp(0, 1)
        return hls_to_rgb(torch.cat([hue, lightness, hls[:, 2:]], dim=1))

    def closed_form() -> torch.Tensor:
        lightness = hls_lightness(images)
        brighter = torch.addcmul(lightness, gain, 1 - lightness).clamp_(0, 1)
        return with_lightness(rotate_hue(images, turns), lightness, brighter)

    return ("hue turn + lightness, 2x512x512", "kornia HLS round trip", round_trip, "rotate_hue + with_lightness", closed_form)


def compiled_jitter() -> Case:
    """color_jitter's pixel chain (brightness, contrast, saturation, hue) on 2x512x512 images, eager
    against `torch.compile` (inductor's fused C++ loops; not shipped: compiling takes seconds per
    input shape and needs a C++ compiler at run time). The compile itself is not timed."""
    images = torch.rand(2, 3, 512, 512)
    factors = torch.tensor([[1.2, 0.9, 1.3], [0.7, 1.1, 0.5]])
    turns = torch.tensor([0.3, -0.2])

    def chain(x: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = (x * f[:, 0].view(-1, 1, 1, 1)).clamp(0.0, 1.0)
        x = adjust_contrast_with_mean_subtraction(x, f[:, 1]).clamp(0.0, 1.0)
        x = adjust_saturation_with_gray_subtraction(x, f[:, 2]).clamp(0.0, 1.0)
        return rotate_hue(x, t)

    compiled = torch.compile(chain, dynamic=False)
    start = time.perf_counter()
    compiled(images, factors, turns)
    print(f"color_jitter chain compiled in {time.perf_counter() - start:.1f} s", flush=True)
    return (
        "color_jitter chain, 2x512x512",
        "eager (shipped)",
        lambda: chain(images, factors, turns),
        "torch.compile",
        lambda: compiled(images, factors, turns),
    )


def fourier_guard() -> Case:
    """The decoder's mask-feature filter at inference, (1, 64, 256, 256): a channel of zeros gives
    zero bins and so the guarded path; without zero bins the unguarded one runs."""
    module = FourierAmplitudeFilter(64).eval()
    features = torch.randn(1, 64, 256, 256)
    with_zero_bins = features.clone()
    with_zero_bins[0, 0] = 0

    def run(x: torch.Tensor) -> Callable[[], object]:
        def call() -> None:
            with torch.inference_mode():
                module(x)

        return call

    return ("Fourier filter, 1x64x256x256", "guarded (zero bins)", run(with_zero_bins), "unguarded", run(features))


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            output_buffer(),  # first: what a fresh allocation costs depends on what the process did before
            mask_png(Path(tmp)),
            fft_length(),
            correlation(channels=1, batch=2),
            correlation(channels=3, batch=1),
            poisson_draws(),
            planar_layout(),
            chunk_size(),
            iso_colour(),
            fourier_guard(),
            compiled_jitter(),
        ]
        print(f"torch {torch.__version__}, 1 thread, median of {args.repeats}")
        print("| work | before | ms | now | ms | speed-up |\n|---|---|---:|---|---:|---:|")
        for work, before, before_run, now, now_run in cases:
            before_ms, now_ms = median_ms(before_run, args.repeats), median_ms(now_run, args.repeats)
            print(f"| {work} | {before} | {before_ms:.2f} | {now} | {now_ms:.2f} | {before_ms / now_ms:.2f}x |", flush=True)
        sizes = {level: (Path(tmp) / f"mask{level}.png").stat().st_size for level in (6, MASK_PNG_LEVEL)}
        print(f"\nmask PNG sizes: level 6 {sizes[6]} bytes, level {MASK_PNG_LEVEL} {sizes[MASK_PNG_LEVEL]} bytes")


if __name__ == "__main__":
    main()

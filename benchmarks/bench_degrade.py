"""Images per second of every degradation, batched (ours) against albumentations (one image at a
time, as the published generator ran), the time of one float32 pass over the images (the floor for
any degradation on float tensors), and frosted glass against a per-pixel Python loop.

    python3 benchmarks/bench_degrade.py --sizes 512 1024 --batches 1 16 --device cpu

albumentations is optional and only for this benchmark (`pip install albumentations`); without it
only our numbers and the per-pixel loop are printed. Ours takes float (B, 3, H, W) tensors in
[0, 1] and albumentations uint8 (H, W, 3) arrays: neither includes file I/O or conversion. Ours
writes into one output buffer per batch shape, reused from call to call, as `robustsam degrade`
does from type to type (a fresh output made brightness 2.4x slower: benchmarks/bench_choices.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from core.degradations import PUBLISHED, degrade
from core.device import resolve_device


def albumentations_transforms() -> Dict[str, Callable[[], object]]:
    """The closest albumentations (2.x) transform per type, with the published parameters; empty
    when albumentations is not installed. snow is RandomSnow only (the published flakes came from
    imgaug), rain uses albumentations' own drop model, color_jitter's hue is capped at 0.5."""
    try:
        import albumentations as A
    except ImportError:
        return {}
    return {
        "snow": lambda: A.RandomSnow(snow_point_range=(0.3, 0.7), brightness_coeff=2.5, p=1),
        "fog": lambda: A.RandomFog(fog_coef_range=(0.1, 0.2), alpha_coef=0.08, p=1),
        "rain": lambda: A.RandomRain(slant_range=(-10, 10), drop_length=36, drop_width=1, p=1),
        "gauss_noise": lambda: A.GaussNoise(std_range=(250**0.5 / 255, 260**0.5 / 255), per_channel=True, p=1),
        "ISO_noise": lambda: A.ISONoise(color_shift=(0.4, 0.5), intensity=(0.7, 0.8), p=1),
        "impulse_noise": lambda: A.MultiplicativeNoise(multiplier=(1.4, 1.5), per_channel=True, elementwise=True, p=1),
        "resampling_blur": lambda: A.Downscale(scale_range=(0.25, 0.25), p=1),
        "motion_blur": lambda: A.MotionBlur(blur_limit=(3, 35), p=1),
        "zoom_blur": lambda: A.ZoomBlur(max_factor=(1.32, 1.33), step_factor=(0.05, 0.07), p=1),
        "color_jitter": lambda: A.ColorJitter(brightness=0.7, contrast=0.3, saturation=0.7, hue=0.5, p=1),
        "compression": lambda: A.ImageCompression(quality_range=(5, 10), p=1),
        "elastic_transform": lambda: A.ElasticTransform(alpha=100, sigma=10, p=1),
        "frosted_glass_blur": lambda: A.GlassBlur(sigma=0.7, max_delta=3, iterations=1, p=1),
        "brightness": lambda: A.MultiplicativeNoise(multiplier=(0.6, 0.8), elementwise=False, p=1),
        "contrast": lambda: A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=(0.6, 0.7), p=1),
    }


def median_seconds(run: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    run()  # warm-up: allocator, kernel selection, lazy imports
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def glass_loop(image: np.ndarray, radius: int, rng: np.random.Generator) -> np.ndarray:
    """The published approach: a Python loop visiting every pixel (the baseline, not our code)."""
    height, width = image.shape[:2]
    out = np.empty_like(image)
    for y in range(height):
        for x in range(width):
            dy, dx = rng.integers(-radius, radius + 1, size=2)
            out[y, x] = image[min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1)]
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--types", nargs="+", default=list(PUBLISHED))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--glass-crop", type=int, default=64, help="side of the crop the per-pixel loop is timed on")
    parser.add_argument("--albu-images", type=int, default=4, help="images albumentations runs on per repeat")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch and OpenCV; 1 keeps both fair on a shared machine")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    reference = albumentations_transforms()
    if reference:
        import cv2

        cv2.setNumThreads(args.threads)
    print(f"device {device}, threads {torch.get_num_threads()}, albumentations {'yes' if reference else 'no'}")
    header = f"{'type':<20}{'size':>6}{'batch':>6}{'ours img/s':>12}{'albu img/s':>12}{'ours/albu':>11}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (max(args.batches), size, size, 3), dtype=np.uint8)
        for kind in args.types:
            albu_rate = None
            if kind in reference:
                transform = reference[kind]()
                count = args.albu_images
                seconds = median_seconds(
                    lambda: [transform(image=p) for p in pixels[:count]], args.repeats, lambda: None
                )
                albu_rate = count / seconds
            for batch in args.batches:
                images = torch.from_numpy(pixels[:batch]).permute(0, 3, 1, 2).contiguous().float().div(255).to(device)
                out = torch.empty_like(images)
                generator = torch.Generator().manual_seed(0)
                seconds = median_seconds(lambda: degrade(images, kind, generator=generator, out=out), args.repeats, sync)
                ours = batch / seconds
                albu = f"{albu_rate:12.1f}{ours / albu_rate:11.2f}" if albu_rate else f"{'-':>12}{'-':>11}"
                print(f"{kind:<20}{size:>6}{batch:>6}{ours:12.1f}{albu}", flush=True)

    print("\nfloor for any float32 degradation, one pass that reads the images and writes others:")
    for size in args.sizes:
        batch = max(args.batches)
        images = torch.rand(batch, 3, size, size, device=device)
        out = torch.empty_like(images)
        seconds = median_seconds(lambda: torch.mul(images, 0.7, out=out), args.repeats, sync) / batch
        print(f"  {size}x{size}: torch.mul(x, c, out=y) {seconds * 1000:.3f} ms/img (batch {batch})")

    crop = args.glass_crop
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (crop, crop, 3), dtype=np.uint8)
    loop_seconds = median_seconds(lambda: glass_loop(small, 3, rng), max(1, args.repeats // 2), lambda: None)
    print(f"\nfrosted glass, per-pixel Python loop timed on {crop}x{crop}, extrapolated by pixel count:")
    for size in args.sizes:
        loop_per_image = loop_seconds * (size * size) / (crop * crop)
        batch = max(args.batches)
        images = torch.rand(batch, 3, size, size, device=device)
        ours = median_seconds(lambda: degrade(images, "frosted_glass_blur"), args.repeats, sync) / batch
        print(f"  {size}x{size}: loop {loop_per_image:8.2f} s/img, ours {ours * 1000:8.2f} ms/img (batch {batch}),"
              f" {loop_per_image / ours:8.0f}x faster")


if __name__ == "__main__":
    main()

"""Large synthetic scenes written straight to a tiled TIFF, block by block, for tests and
benchmarks of tiled segmentation: a textured background with flat-coloured discs."""

from __future__ import annotations

import functools
import os
from typing import Iterator, Sequence

import numpy as np

Disc = tuple[int, int, int]  # centre x, centre y, radius in pixels
BACKGROUND = (90, 110, 100)
DISC_COLOURS = ((230, 40, 40), (40, 40, 230), (240, 230, 40), (40, 220, 60), (230, 60, 230))


def paint_discs(block: np.ndarray, x0: int, y0: int, discs: Sequence[Disc]) -> None:
    """Paints the discs that meet `block` ((h, w, 3) uint8 whose pixel (0, 0) is image pixel (x0, y0))."""
    height, width = block.shape[:2]
    yy, xx = np.ogrid[y0 : y0 + height, x0 : x0 + width]
    for index, (cx, cy, r) in enumerate(discs):
        if cx + r < x0 or cx - r >= x0 + width or cy + r < y0 or cy - r >= y0 + height:
            continue
        block[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = DISC_COLOURS[index % len(DISC_COLOURS)]


NOISE_PERIOD = 64  # the background's faint noise repeats every 64 pixels: cheap to draw and to compress


def scene_block(x0: int, y0: int, height: int, width: int, discs: Sequence[Disc]) -> np.ndarray:
    """The (height, width, 3) uint8 block at (x0, y0) of the scene: faint periodic noise under the
    discs, so any window is drawn alike whatever else is drawn."""
    block = _background(x0 % NOISE_PERIOD, y0 % NOISE_PERIOD, height, width).copy()
    paint_discs(block, x0, y0, discs)
    return block


@functools.lru_cache(maxsize=4)
def _background(phase_x: int, phase_y: int, height: int, width: int) -> np.ndarray:
    noise = np.random.default_rng(0).integers(0, 8, (NOISE_PERIOD, NOISE_PERIOD, 3))
    rows = (np.arange(height) + phase_y) % NOISE_PERIOD
    columns = (np.arange(width) + phase_x) % NOISE_PERIOD
    return (np.array(BACKGROUND) + noise[rows][:, columns]).astype(np.uint8)


def write_large_scene(path: str | os.PathLike, height: int, width: int, discs: Sequence[Disc], block: int = 512) -> None:
    """Writes the scene as a tiled, zlib-compressed RGB TIFF (BigTIFF past 4 GB raw) holding one
    block in memory at a time."""
    import tifffile

    def blocks() -> Iterator[np.ndarray]:
        for y0 in range(0, height, block):
            for x0 in range(0, width, block):
                tile = np.zeros((block, block, 3), dtype=np.uint8)
                h, w = min(block, height - y0), min(block, width - x0)
                tile[:h, :w] = scene_block(x0, y0, h, w, discs)
                yield tile

    tifffile.imwrite(path, blocks(), shape=(height, width, 3), dtype=np.uint8, tile=(block, block), photometric="rgb",
                     compression="zlib", compressionargs={"level": 1}, bigtiff=height * width * 3 >= 2**32 - 2**28)

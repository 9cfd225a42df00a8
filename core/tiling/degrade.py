"""Degrading a large image tile by tile into a tiled TIFF, a few tiles in memory at a time.

Every tile is degraded with the image's one seed, read with a halo of neighbouring pixels that is
cut off again, so the random draws made per image (blur kernel, JPEG quality, brightness factor...)
are the same on every tile. For the types in SEAMLESS that gives exactly the whole image degraded
at once (tests/test_tiling.py); the others are not seamless: per-pixel noise and weather repeat
their draws on each tile, and zoom blur, fog, elastic transform, frosted glass and colour jitter
depend on the whole frame they see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..io import atomic_path
from ..degradations.preview import apply, to_tensor, to_uint8
from ..errors import InputError
from .grid import Window
from .sources import ImageSource

# Types whose tiled result equals the whole image degraded at once (halo DEGRADE_HALO, level 3).
SEAMLESS = ("brightness", "compression", "contrast", "motion_blur", "resampling_blur")
DEGRADE_HALO = 64  # pixels read around each tile: past the motion-blur kernel, a multiple of JPEG's 16-pixel blocks
TIFF_BLOCK = 16  # TIFF tiles are multiples of 16 pixels; so are halos, keeping JPEG and resampling grids aligned


def degraded_blocks(source: ImageSource, kind: str, level: int, seed: int, tile: int, device: torch.device | str = "cpu") -> Iterator[np.ndarray]:
    """The degraded image in row-major (tile, tile, 3) uint8 blocks, edge blocks padded with 0."""
    for y0 in range(0, source.height, tile):
        for x0 in range(0, source.width, tile):
            inner = Window(x0, y0, min(x0 + tile, source.width), min(y0 + tile, source.height))
            outer = Window(max(0, x0 - DEGRADE_HALO), max(0, y0 - DEGRADE_HALO),
                           min(source.width, inner.x1 + DEGRADE_HALO), min(source.height, inner.y1 + DEGRADE_HALO))
            degraded = to_uint8(apply(to_tensor(source.read(outer), device), kind, level, [seed]))[0]
            block = np.zeros((tile, tile, 3), dtype=np.uint8)
            block[: inner.height, : inner.width] = degraded[inner.y0 - outer.y0 : inner.y1 - outer.y0, inner.x0 - outer.x0 : inner.x1 - outer.x0]
            yield block


def check_degrade_tile(tile: int) -> None:
    """Raises InputError unless `tile` is a positive multiple of TIFF_BLOCK."""
    if tile < TIFF_BLOCK or tile % TIFF_BLOCK:
        raise InputError(f"tile size {tile}: must be a positive multiple of {TIFF_BLOCK} pixels (TIFF tiles)")


def degrade_tiled(source: ImageSource, path: str | Path, kind: str, level: int, seed: int, tile: int = 1024,
                  device: torch.device | str = "cpu") -> None:
    """Writes `source` under degradation `kind` as a tiled, zlib-compressed RGB TIFF at `path`
    (atomically), `tile` x `tile` pixels at a time."""
    import tifffile

    check_degrade_tile(tile)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, degraded_blocks(source, kind, level, seed, tile, device), shape=(source.height, source.width, 3),
                         dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression="zlib",
                         bigtiff=source.height * source.width * 3 >= 2**32 - 2**28)

"""Images read window by window: TIFF (BigTIFF, tiled, striped, pyramidal) through tifffile, GeoTIFF
through rasterio (the `geo` extra), anything else decoded whole.

A source has `height`, `width` and `read(window) -> (h, w, 3) uint8`; only the strips or tiles of the
file that meet the window are decoded, so memory stays at a few windows whatever the image size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from ..io import read_image, to_rgb8
from ..errors import InputError
from .grid import Window

TIFF_SUFFIXES = (".tif", ".tiff")


class ImageSource(Protocol):
    height: int
    width: int
    path: Path

    def read(self, window: Window) -> np.ndarray:
        """The pixels of `window` as (h, w, 3) uint8 RGB."""

    def close(self) -> None:
        """Releases the file."""


class ArraySource:
    """An image already in memory (any format imageio reads, or an array)."""

    def __init__(self, image: np.ndarray, path: Path = Path("<array>")) -> None:
        self.image = to_rgb8(image)
        self.height, self.width = self.image.shape[:2]
        self.path = path

    def read(self, window: Window) -> np.ndarray:
        return self.image[window.y0 : window.y1, window.x0 : window.x1]

    def close(self) -> None:
        pass


class TiffSource:
    """The full-resolution level of a TIFF read through its strips or tiles (chunky samples);
    other layouts (planar samples, volumes) are decoded whole on first read."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        try:
            self._file = tifffile.TiffFile(path)
            self._page = self._file.series[0].levels[0].keyframe
        except Exception as error:  # tifffile raises many types for corrupt files
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise InputError(f"{path}: not a readable TIFF ({type(error).__name__}{': ' + detail if detail else ''})") from None
        shape = self._page.shape
        self.height, self.width = int(self._page.imagelength), int(self._page.imagewidth)
        if len(shape) not in (2, 3):
            raise InputError(f"{path}: not a readable image (unsupported TIFF shape {shape})")
        self._chunked = self._page.planarconfig == 1 and len(self._page.dataoffsets) > 0 and self._page.imagedepth == 1
        self._whole: Optional[np.ndarray] = None

    def read(self, window: Window) -> np.ndarray:
        if not self._chunked:
            if self._whole is None:
                self._whole = to_rgb8(self._page.asarray())
            return self._whole[window.y0 : window.y1, window.x0 : window.x1]
        page = self._page
        samples = page.samplesperpixel
        out = np.zeros((window.height, window.width, samples), dtype=page.dtype)
        for index in self._segments(window):
            self._file.filehandle.seek(page.dataoffsets[index])
            data = self._file.filehandle.read(page.databytecounts[index]) if page.databytecounts[index] else None
            segment, position, _ = page.decode(data, index, jpegtables=page.jpegtables)
            if segment is None:
                continue
            segment = segment.reshape(segment.shape[1], segment.shape[2], -1)
            y, x = position[2], position[3]
            part = Window(x, y, x + segment.shape[1], y + segment.shape[0]).intersection(window)
            if part is None:
                continue
            out[part.y0 - window.y0 : part.y1 - window.y0, part.x0 - window.x0 : part.x1 - window.x0] = \
                segment[part.y0 - y : part.y1 - y, part.x0 - x : part.x1 - x]
        return to_rgb8(out)

    def _segments(self, window: Window) -> list[int]:
        """Indices of the strips or tiles that meet `window`."""
        page = self._page
        if page.is_tiled:
            tile_h, tile_w = page.tilelength, page.tilewidth
            across = math.ceil(self.width / tile_w)
            return [row * across + column
                    for row in range(window.y0 // tile_h, math.ceil(window.y1 / tile_h))
                    for column in range(window.x0 // tile_w, math.ceil(window.x1 / tile_w))]
        rows = page.rowsperstrip or self.height
        return list(range(window.y0 // rows, math.ceil(window.y1 / rows)))

    def close(self) -> None:
        self._file.close()


def open_source(path: str | os.PathLike) -> ImageSource:
    """A windowed source for `path`: rasterio for a georeferenced TIFF when the `geo` extra is
    installed, tifffile for other TIFFs, the whole decoded image for other formats."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        from .geo import open_geotiff

        geotiff = open_geotiff(path)
        return geotiff if geotiff is not None else TiffSource(path)
    return ArraySource(read_image(path), path)

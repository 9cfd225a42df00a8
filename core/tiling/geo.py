"""GeoTIFF: windows read through rasterio (the `geo` extra), the affine transform between pixel
and map coordinates, and prompts given in map coordinates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..io import to_rgb8
from ..data.prompt_files import Prompt
from ..errors import InputError
from .grid import Window


class GeoTiffSource:
    """A georeferenced TIFF read window by window; `transform` maps pixel (column, row) to map
    (x, y) in `crs` (a rasterio CRS)."""

    def __init__(self, dataset: Any, path: Path) -> None:
        self.dataset = dataset
        self.path = path
        self.height, self.width = dataset.height, dataset.width
        self.transform = dataset.transform
        self.crs = dataset.crs

    def read(self, window: Window) -> np.ndarray:
        from rasterio.windows import Window as RasterWindow

        bands = min(self.dataset.count, 3)
        pixels = self.dataset.read(list(range(1, bands + 1)), window=RasterWindow(window.x0, window.y0, window.width, window.height))
        return to_rgb8(np.moveaxis(pixels, 0, -1))

    def to_map(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (x right, y down, 0 at the top-left corner of the first pixel) to map coordinates."""
        a, b, c, d, e, f = self.transform[:6]
        return a * xs + b * ys + c, d * xs + e * ys + f

    def to_pixels(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates to pixel coordinates (the inverse of `to_map`)."""
        inverse = ~self.transform
        a, b, c, d, e, f = inverse[:6]
        return a * xs + b * ys + c, d * xs + e * ys + f

    def close(self) -> None:
        self.dataset.close()


def open_geotiff(path: Path) -> Optional[GeoTiffSource]:
    """A GeoTiffSource when rasterio is installed and `path` carries a CRS, else None."""
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    except ImportError:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            dataset = rasterio.open(path)
        except RasterioIOError:
            return None  # tifffile reports what is wrong with the file
    if dataset.crs is None:
        dataset.close()
        return None
    return GeoTiffSource(dataset, path)


def prompts_to_pixels(source: Any, prompts: Sequence[Prompt]) -> tuple[Prompt, ...]:
    """`prompts` given in the map coordinates of `source`'s CRS, in pixel coordinates.

    Raises InputError when `source` is not a georeferenced image (no CRS, or the `geo` extra missing)."""
    if not isinstance(source, GeoTiffSource):
        hint = "" if _has_rasterio() else " (or the geo extra is missing: pip install 'robustsam[geo]')"
        raise InputError(f"{source.path}: has no CRS, so prompts in map coordinates cannot be placed{hint}")
    converted = []
    for prompt in prompts:
        box = prompt.box
        if box is not None:
            xs, ys = source.to_pixels(np.array([box[0], box[2]]), np.array([box[1], box[3]]))
            box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        points = prompt.points
        if points:
            xs, ys = source.to_pixels(np.array([p[0] for p in points]), np.array([p[1] for p in points]))
            points = tuple((float(x), float(y)) for x, y in zip(xs, ys))
        converted.append(replace(prompt, box=box, points=points))
    return tuple(converted)


def map_prompts_to_pixels(path: Path, prompts: Sequence[Prompt]) -> tuple[Prompt, ...]:
    """`prompts_to_pixels` for the image file `path`."""
    from .sources import open_source

    source = open_source(path)
    try:
        return prompts_to_pixels(source, prompts)
    finally:
        source.close()


def _has_rasterio() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True

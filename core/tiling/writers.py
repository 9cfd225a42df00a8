"""Writers of tiled runs: label images as tiled TIFF, painted block by block from placed masks, so
the full label image is never held in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..io import atomic_path
from ..inference.mask_writers import ImageJob
from .grid import Window
from .placed import PlacedMask

LABEL_BLOCK = 256  # TIFF tile side: the unit painted and compressed at a time


def label_blocks(masks: Sequence[PlacedMask], height: int, width: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """The label image in row-major LABEL_BLOCK x LABEL_BLOCK blocks (edge blocks padded with 0):
    0 background, k + 1 for mask k; where masks overlap the higher predicted IoU wins."""
    order = sorted(range(len(masks)), key=lambda k: masks[k].predicted_iou)
    windows = [masks[k].window for k in order]
    for y0 in range(0, height, LABEL_BLOCK):
        band = [i for i, window in enumerate(windows) if window.y0 < y0 + LABEL_BLOCK and y0 < window.y1]
        for x0 in range(0, width, LABEL_BLOCK):
            block_window = Window(x0, y0, x0 + LABEL_BLOCK, y0 + LABEL_BLOCK)
            block = np.zeros((LABEL_BLOCK, LABEL_BLOCK), dtype=dtype)
            for i in band:
                if windows[i].intersection(block_window) is not None:
                    block[masks[order[i]].within(block_window)] = order[i] + 1
            yield block


def write_label_tiff(path: str | Path, masks: Sequence[PlacedMask], height: int, width: int) -> None:
    """Writes the labels of `masks` atomically as a tiled, zlib-compressed TIFF (16-bit, or 32-bit
    past 65535 masks; BigTIFF when the raw labels pass 2 GiB)."""
    import tifffile

    dtype = np.dtype(np.uint16 if len(masks) <= np.iinfo(np.uint16).max else np.uint32)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, label_blocks(masks, height, width, dtype), shape=(height, width), dtype=dtype,
                         tile=(LABEL_BLOCK, LABEL_BLOCK), compression="zlib", bigtiff=height * width * dtype.itemsize >= 2**31)


class TiledLabelWriter:
    """`DIR/<stem>.tif`: the label image of a tiled run (see `write_label_tiff`)."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / f"{job.stem}.tif"]

    def write(self, job: ImageJob, image: Any, records: Sequence[PlacedMask]) -> None:
        write_label_tiff(self.done_paths(job)[0], records, image.height, image.width)

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        pass


def tiled_writers(output_dir: str | Path, output_format: str, polygon_tolerance: Optional[float] = None) -> list[Any]:
    """The writers of a tiled run: 'label' as a tiled TIFF, 'geojson' in the image's CRS from each
    mask's crop; 'png' and 'coco' as in an untiled run (each mask expanded to full size one at a time)."""
    from ..geometry import DEFAULT_TOLERANCE
    from ..inference.mask_writers import make_writers
    from .geojson import TiledGeoJsonWriter

    if output_format == "label":
        return [TiledLabelWriter(Path(output_dir))]
    if output_format == "geojson":
        return [TiledGeoJsonWriter(Path(output_dir), DEFAULT_TOLERANCE if polygon_tolerance is None else polygon_tolerance)]
    if output_format not in ("png", "coco"):
        raise InputError(f"--format {output_format}: not with --tile (png, coco, label or geojson)")
    return make_writers(output_dir, output_format, overlay=False)

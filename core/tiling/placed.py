"""Masks of a large image kept as their bounding-box crop and its place, not as full-size arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..inference.mask_writers import MaskRecord
from .grid import Window


@dataclass
class PlacedMask:
    """A mask of a height x width image stored as `crop` ((h, w) bool, tight around the mask) with
    its top-left corner at (x0, y0); otherwise SAM's record fields, like `MaskRecord`, in image
    pixel coordinates. `mask` expands it to (height, width) on demand."""

    crop: np.ndarray
    x0: int
    y0: int
    image_size: tuple[int, int]
    predicted_iou: float
    stability_score: float
    point: tuple[float, float]
    crop_box: tuple[int, int, int, int]
    category_id: int = 1

    @classmethod
    def from_mask(cls, mask: np.ndarray, origin: tuple[int, int], image_size: tuple[int, int], predicted_iou: float,
                  stability_score: float, point: tuple[float, float], crop_box: tuple[int, int, int, int], category_id: int = 1) -> "PlacedMask":
        """A (h, w) bool `mask` whose pixel (0, 0) is image pixel `origin` (x, y), cropped tight."""
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            crop, y0, x0 = np.zeros((0, 0), dtype=bool), 0, 0
        else:
            y0, x0 = int(rows[0]), int(columns[0])
            crop = np.ascontiguousarray(mask[y0 : rows[-1] + 1, x0 : columns[-1] + 1])
        return cls(crop, origin[0] + x0, origin[1] + y0, image_size, predicted_iou, stability_score, point, crop_box, category_id)

    @classmethod
    def from_record(cls, record: MaskRecord, tile: Window, image_size: tuple[int, int]) -> "PlacedMask":
        """A record of the tile image `tile` placed in the whole image."""
        point = (record.point[0] + tile.x0, record.point[1] + tile.y0)
        crop_box = (tile.x0 + record.crop_box[0], tile.y0 + record.crop_box[1], record.crop_box[2], record.crop_box[3])
        return cls.from_mask(record.mask, (tile.x0, tile.y0), image_size, record.predicted_iou, record.stability_score,
                             point, crop_box, record.category_id)

    @property
    def window(self) -> Window:
        """The crop's rectangle in the image."""
        return Window(self.x0, self.y0, self.x0 + self.crop.shape[1], self.y0 + self.crop.shape[0])

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) as SAM's generator gives it (w, h: last pixel minus first); zeros when empty."""
        if self.crop.size == 0:
            return 0, 0, 0, 0
        return self.x0, self.y0, self.crop.shape[1] - 1, self.crop.shape[0] - 1

    @property
    def mask(self) -> np.ndarray:
        """The (height, width) bool mask."""
        full = np.zeros(self.image_size, dtype=bool)
        full[self.y0 : self.y0 + self.crop.shape[0], self.x0 : self.x0 + self.crop.shape[1]] = self.crop
        return full

    def within(self, window: Window) -> np.ndarray:
        """The mask's pixels inside `window`, as a (window.height, window.width) bool array."""
        out = np.zeros((window.height, window.width), dtype=bool)
        part = self.window.intersection(window)
        if part is not None:
            out[part.y0 - window.y0 : part.y1 - window.y0, part.x0 - window.x0 : part.x1 - window.x0] = \
                self.crop[part.y0 - self.y0 : part.y1 - self.y0, part.x0 - self.x0 : part.x1 - self.x0]
        return out


def bounding_window(windows: Sequence[Window]) -> Window:
    """The smallest window holding all of `windows`."""
    return Window(min(w.x0 for w in windows), min(w.y0 for w in windows), max(w.x1 for w in windows), max(w.y1 for w in windows))


def join(masks: Sequence[PlacedMask], pieces: Sequence[np.ndarray | None] = ()) -> PlacedMask:
    """One mask: the union of `masks` (or of `pieces`, each a bool array over its mask's window,
    when given), scored by the area-weighted mean of their scores; its point is the largest part's."""
    parts = list(pieces) if pieces else [mask.crop for mask in masks]
    canvas_window = bounding_window([mask.window for mask in masks])
    canvas = np.zeros((canvas_window.height, canvas_window.width), dtype=bool)
    areas = []
    for mask, part in zip(masks, parts):
        window = mask.window
        canvas[window.y0 - canvas_window.y0 : window.y1 - canvas_window.y0, window.x0 - canvas_window.x0 : window.x1 - canvas_window.x0] |= part
        areas.append(float(part.sum()))
    weights = np.array(areas) if sum(areas) > 0 else np.ones(len(masks))
    largest = masks[int(np.argmax(weights))]
    crop_box = bounding_window([Window(m.crop_box[0], m.crop_box[1], m.crop_box[0] + m.crop_box[2], m.crop_box[1] + m.crop_box[3]) for m in masks])
    return PlacedMask.from_mask(
        canvas, (canvas_window.x0, canvas_window.y0), largest.image_size,
        float(np.average([m.predicted_iou for m in masks], weights=weights)),
        float(np.average([m.stability_score for m in masks], weights=weights)),
        largest.point, (crop_box.x0, crop_box.y0, crop_box.width, crop_box.height), largest.category_id,
    )

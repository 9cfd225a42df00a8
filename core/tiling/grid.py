"""The tile grid: overlapping full-resolution windows covering an image, and which tile owns which pixel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from ..errors import InputError


@dataclass(frozen=True)
class Window:
    """A rectangle of image pixels: columns x0..x1 and rows y0..y1, ends excluded."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def intersection(self, other: "Window") -> "Window | None":
        """The common rectangle, or None when they do not overlap."""
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        return Window(x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def contains(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """True when the box (x0, y0, x1, y1), in pixel coordinates, lies inside this window."""
        return self.x0 <= x0 and self.y0 <= y0 and x1 <= self.x1 and y1 <= self.y1


def check_tiling(tile: int, overlap: int) -> None:
    """Raises InputError unless `tile` is positive and 0 <= `overlap` < `tile`."""
    if tile < 1:
        raise InputError(f"tile size {tile}: must be a positive number of pixels")
    if overlap < 0:
        raise InputError(f"tile overlap {overlap}: must not be negative")
    if overlap >= tile:
        raise InputError(f"tile size {tile} is not larger than the tile overlap {overlap}: tiles would not advance")


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis: a stride of tile - overlap, the last tile flush with the end (so
    every tile is full size when the image is at least one tile long)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _cuts(starts: Sequence[int], tile: int, length: int) -> list[int]:
    """Borders between the pixels owned by consecutive tiles: halfway through their overlap."""
    ends = [min(start + tile, length) for start in starts]
    return [0] + [(starts[i + 1] + ends[i]) // 2 for i in range(len(starts) - 1)] + [length]


class TileGrid:
    """Overlapping `tile` x `tile` windows over a height x width image, `overlap` pixels shared by
    neighbours; tiles at the right and bottom edges are shifted inwards to stay full size.

    Each pixel is owned by exactly one tile (`core`): the overlap is split halfway, so stitched
    pieces never double up.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: int) -> None:
        check_tiling(tile, overlap)
        self.height, self.width, self.tile, self.overlap = height, width, tile, overlap
        self._xs, self._ys = _starts(width, tile, overlap), _starts(height, tile, overlap)
        self._x_cuts, self._y_cuts = _cuts(self._xs, tile, width), _cuts(self._ys, tile, height)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return len(self._ys), len(self._xs)

    def __len__(self) -> int:
        return len(self._ys) * len(self._xs)

    def __iter__(self) -> Iterator[Window]:
        return (self.window(index) for index in range(len(self)))

    def window(self, index: int) -> Window:
        """Tile `index` (row-major) as a window of the image."""
        row, column = divmod(index, len(self._xs))
        x0, y0 = self._xs[column], self._ys[row]
        return Window(x0, y0, min(x0 + self.tile, self.width), min(y0 + self.tile, self.height))

    def core(self, index: int) -> Window:
        """The pixels tile `index` owns: its window less half of each overlap with a neighbour."""
        row, column = divmod(index, len(self._xs))
        return Window(self._x_cuts[column], self._y_cuts[row], self._x_cuts[column + 1], self._y_cuts[row + 1])

    def covering(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        """Tiles whose windows meet the box (x0, y0, x1, y1)."""
        return [index for index, window in enumerate(self) if window.x0 < x1 and x0 < window.x1 and window.y0 < y1 and y0 < window.y1]

    def best_containing(self, x0: float, y0: float, x1: float, y1: float) -> int | None:
        """The tile that holds the whole box with its centre nearest the box's centre (the most
        context on every side), or None when no single tile holds it."""
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        best: tuple[float, int] | None = None
        for index, window in enumerate(self):
            if window.contains(x0, y0, x1, y1):
                distance = ((window.x0 + window.x1) / 2 - centre_x) ** 2 + ((window.y0 + window.y1) / 2 - centre_y) ** 2
                if best is None or distance < best[0]:
                    best = (distance, index)
        return None if best is None else best[1]

    def neighbours(self) -> Iterator[tuple[int, int, Window]]:
        """Pairs of tiles whose windows overlap (i < j), with the shared window."""
        for index, window in enumerate(self):
            for other in self.covering(window.x0, window.y0, window.x1, window.y1):
                if other > index:
                    yield index, other, window.intersection(self.window(other))  # type: ignore[misc]

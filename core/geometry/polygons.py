"""Binary masks <-> polygons with holes, in pixel-edge coordinates.

Coordinates are (x, y) with the pixel-edge convention of COCO and pycocotools: pixel (row r, column c)
is the unit square [c, c + 1] x [r, r + 1], so a mask of width W spans x in [0, W]. A polygon is a
list of rings, the exterior first and then its holes; each ring is a (K, 2) float64 array of (x, y)
vertices, K >= 3, not closed (the first vertex is not repeated). Exteriors wind counter-clockwise and
holes clockwise in (x, y) (the GeoJSON orientation); on screen, with y pointing down, that looks mirrored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

# The geometry extra (shapely, scikit-image) is imported where it is used, so that the rest of the
# package and its defaults load without it.
GEOMETRY_PACKAGES = ("shapely", "skimage")
Polygon = list[np.ndarray]

# Contours run half way between pixel centres, so a pixel centre lies 0.35 px or more from its
# outline; 0.25 px drops about two thirds of the staircase's vertices and gives the test masks back exactly.
DEFAULT_TOLERANCE = 0.25


def mask_to_polygons(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[Polygon]:
    """The outlines of a (H, W) mask's 4-connected components, each with its holes.

    Contours are scikit-image's marching squares at level 0.5 (they pass between pixel centres, so
    every pixel centre stays on its own side); shapely simplifies them (Douglas-Peucker with
    `tolerance` in pixels, 0 keeps every vertex) without changing their topology. Components are
    ordered by their first pixel in row-major order.
    """
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.geometry.polygon import orient
    from skimage.measure import find_contours

    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    # A background border closes every contour; it shifts indices by one pixel, which (with the
    # half pixel from pixel centres to pixel edges) is undone below.
    padded = np.pad(np.asarray(mask, dtype=bool), 1).astype(np.float32)
    rings = [contour[:-1, ::-1] - 0.5 for contour in find_contours(padded, 0.5, positive_orientation="high")]
    # positive_orientation="high" winds component outlines counter-clockwise in (row, column), so
    # clockwise in (x, y), and holes the other way.
    exteriors = [ring for ring in rings if _signed_area(ring) < 0]
    holes = [ring for ring in rings if _signed_area(ring) > 0]
    shapes = [ShapelyPolygon(ring) for ring in exteriors]
    holes_of: list[list[np.ndarray]] = [[] for _ in exteriors]
    for hole in holes:
        # The hole belongs to the smallest component outline around it (islands nest in holes).
        hole_shape = ShapelyPolygon(hole)
        owners = [index for index, shape in enumerate(shapes) if shape.covers(hole_shape)]
        holes_of[min(owners, key=lambda index: shapes[index].area)].append(hole)
    polygons = []
    for exterior, own_holes in zip(exteriors, holes_of):
        shape = orient(ShapelyPolygon(exterior, own_holes), sign=1.0)
        if tolerance > 0:
            shape = shape.simplify(tolerance, preserve_topology=True)
        polygons.append([_open_ring(shape.exterior.coords), *(_open_ring(ring.coords) for ring in shape.interiors)])
    polygons.sort(key=lambda polygon: _first_pixel(polygon[0]))
    return polygons


def polygons_to_mask(polygons: Sequence[Polygon], height: int, width: int) -> np.ndarray:
    """(height, width) bool mask of the polygons' union, each exterior minus its holes.

    Rings are rasterised by pycocotools, as `COCO.annToMask` does, so the mask equals what a COCO
    consumer reads from the same outlines. A ring that crosses itself is filled even-odd.
    """
    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        if not polygon:
            continue
        filled = _fill_ring(polygon[0], height, width)
        for hole in polygon[1:]:
            filled &= ~_fill_ring(hole, height, width)
        mask |= filled
    return mask


def _fill_ring(ring: np.ndarray, height: int, width: int) -> np.ndarray:
    ring = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    if len(ring) < 3:
        return np.zeros((height, width), dtype=bool)
    rle = mask_utils.frPyObjects([ring.ravel().tolist()], height, width)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def _signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a (K, 2) ring: positive counter-clockwise in its own axes."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _open_ring(coords) -> np.ndarray:
    """A shapely ring's coordinates as a (K, 2) array without the closing vertex."""
    return np.asarray(coords, dtype=np.float64)[:-1, :2]


def _first_pixel(ring: np.ndarray) -> tuple[float, float]:
    """(top, left) of a ring, which orders components as a row-major scan meets them."""
    top = ring[:, 1].min()
    return float(top), float(ring[ring[:, 1] == top, 0].min())

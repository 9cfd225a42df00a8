"""COCO polygon segmentations: flat [x0, y0, x1, y1, ...] lists in pixel-edge coordinates.

COCO has no holes in polygon form: pycocotools rasterises each flat polygon even-odd and unions the
polygons of an annotation (`frPyObjects` then `merge`). A hole therefore goes into its exterior as a
"keyhole": the exterior walks a zero-width bridge to the hole, around it and back. The bridge adds
nothing to an even-odd fill, so `COCO.annToMask` of the result is the polygon minus its holes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .polygons import Polygon


def to_coco_segmentation(polygons: Sequence[Polygon]) -> list[list[float]]:
    """COCO `segmentation` of polygons: one flat list per polygon, its holes bridged in."""
    return [flatten_ring(bridge_holes(polygon)) for polygon in polygons]


def bridge_holes(polygon: Polygon) -> np.ndarray:
    """(K, 2) single ring covering an exterior minus its holes under an even-odd fill: each hole is
    entered from the nearest vertex of the ring built so far and left back to it."""
    ring = np.asarray(polygon[0], dtype=np.float64)
    for hole in polygon[1:]:
        hole = np.asarray(hole, dtype=np.float64)
        distances = ((ring[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
        at_ring, at_hole = np.unravel_index(int(distances.argmin()), distances.shape)
        loop = np.roll(hole, -at_hole, axis=0)
        ring = np.concatenate([ring[: at_ring + 1], loop, loop[:1], ring[at_ring:]])
    return ring


def flatten_ring(ring: np.ndarray) -> list[float]:
    """A (K, 2) ring as COCO's flat [x0, y0, x1, y1, ...]."""
    return [float(value) for value in np.asarray(ring, dtype=np.float64).ravel()]


def unflatten_ring(flat: Sequence[float]) -> np.ndarray:
    """COCO's flat [x0, y0, x1, y1, ...] as a (K, 2) ring."""
    if len(flat) % 2:
        raise ValueError(f"a flat polygon has an even number of values, got {len(flat)}")
    return np.asarray(flat, dtype=np.float64).reshape(-1, 2)

"""COCO polygon segmentations: flat [x0, y0, x1, y1, ...] lists in pixel-edge coordinates.

COCO has no holes in polygon form: pycocotools rasterises each flat polygon even-odd and unions the
polygons of an annotation (`frPyObjects` then `merge`). A hole therefore goes into its exterior as a
"keyhole": the exterior walks a zero-width bridge to the hole, around it and back. The bridge adds
nothing to an even-odd fill, so `COCO.annToMask` of the result is the polygon minus its holes. The
same bridges join all the rings of a mask into one (YOLO's one polygon per object).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .polygons import Polygon


def to_coco_segmentation(polygons: Sequence[Polygon]) -> list[list[float]]:
    """COCO `segmentation` of polygons: one flat list per polygon, its holes bridged in."""
    return [flatten_ring(bridge_rings(polygon)) for polygon in polygons]


def bridge_rings(rings: Sequence[np.ndarray]) -> np.ndarray:
    """(K, 2) single ring whose even-odd fill is that of all `rings` together (an exterior minus its
    holes, or every ring of a mask): each ring is entered from the nearest vertex of the ring built so
    far and left back to it along the same zero-width bridge."""
    ring = np.asarray(rings[0], dtype=np.float64)
    for other in rings[1:]:
        other = np.asarray(other, dtype=np.float64)
        distances = ((ring[:, None, :] - other[None, :, :]) ** 2).sum(-1)
        at_ring, at_other = np.unravel_index(int(distances.argmin()), distances.shape)
        loop = np.roll(other, -at_other, axis=0)
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

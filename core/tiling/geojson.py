"""GeoJSON of a tiled run's masks: polygons (core.geometry) of each mask's crop, placed in the image
and, for a GeoTIFF, mapped through its transform into its CRS, ready for QGIS (as samgeo writes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inference.mask_writers import ImageJob
from ..inference.polygon_writers import GeoJsonWriter
from .geo import GeoTiffSource
from .placed import PlacedMask


def mask_polygons(mask: PlacedMask, tolerance: float) -> list[list[np.ndarray]]:
    """The polygons of `mask` in image pixel-edge coordinates (x, y), exterior ring first, simplified
    by `tolerance` pixels."""
    from ..geometry import mask_to_polygons

    return [[ring + (mask.x0, mask.y0) for ring in polygon] for polygon in mask_to_polygons(mask.crop, tolerance)]


class TiledGeoJsonWriter(GeoJsonWriter):
    """`DIR/<stem>.geojson` of a tiled run: the untiled writer's features (same properties), outlined
    from each PlacedMask's crop so no full-size mask is made, in the image's CRS when it is a
    GeoTIFF (the collection then names it in a `crs` member) and in pixels (y down) otherwise."""

    def record_polygons(self, record: PlacedMask) -> list[list[np.ndarray]]:
        return mask_polygons(record, self.tolerance)

    def output_coordinates(self, source: Any, ring: np.ndarray) -> np.ndarray:
        """Pixels -> the source's map coordinates, wound as GeoJSON wants: a transform that flips y
        (north up) would wind the ring backwards."""
        if not isinstance(source, GeoTiffSource):
            return ring
        xs, ys = source.to_map(ring[:, 0], ring[:, 1])
        a, b, _, d, e, _ = source.transform[:6]
        mapped = np.stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)], axis=1)
        return mapped[::-1] if a * e - b * d < 0 else mapped

    def collection_members(self, job: ImageJob, image: Any) -> dict[str, Any]:
        members: dict[str, Any] = {"image": job.key, "width": image.width, "height": image.height}
        if isinstance(image, GeoTiffSource):
            members["crs"] = {"type": "name", "properties": {"name": image.crs.to_string()}}
        return members

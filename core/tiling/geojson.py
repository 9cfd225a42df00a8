"""GeoJSON of a tiled run's masks: polygons (core.geometry) of each mask's crop, placed in the image
and, for a GeoTIFF, mapped through its transform into its CRS, ready for QGIS (as samgeo writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_path
from ..inference.mask_writers import ImageJob
from .geo import GeoTiffSource
from .placed import PlacedMask


def mask_polygons(mask: PlacedMask, tolerance: float) -> list[list[np.ndarray]]:
    """The polygons of `mask` in image pixel-edge coordinates (x, y), exterior ring first, simplified
    by `tolerance` pixels."""
    from ..geometry import mask_to_polygons

    return [[ring + (mask.x0, mask.y0) for ring in polygon] for polygon in mask_to_polygons(mask.crop, tolerance)]


def _ring_coordinates(ring: np.ndarray, source: Any) -> list[list[float]]:
    """A closed GeoJSON ring in the source's map coordinates (pixels without a CRS), wound as
    GeoJSON wants: a transform that flips y (north up) would wind it backwards."""
    xs, ys = ring[:, 0], ring[:, 1]
    if isinstance(source, GeoTiffSource):
        xs, ys = source.to_map(xs, ys)
        a, b, _, d, e, _ = source.transform[:6]
        if a * e - b * d < 0:
            xs, ys = xs[::-1], ys[::-1]
    points = [[float(x), float(y)] for x, y in zip(xs, ys)]
    return points + points[:1]


def feature_collection(masks: Sequence[PlacedMask], source: Any, tolerance: float) -> dict[str, Any]:
    """A FeatureCollection with one MultiPolygon per mask (properties: id, area in pixels, scores),
    with a `crs` member naming the GeoTIFF's CRS when there is one."""
    features = []
    for index, mask in enumerate(masks):
        polygons = [[_ring_coordinates(ring, source) for ring in polygon] for polygon in mask_polygons(mask, tolerance)]
        features.append({
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": polygons},
            "properties": {"id": index, "area": mask.area, "predicted_iou": mask.predicted_iou, "stability_score": mask.stability_score},
        })
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if isinstance(source, GeoTiffSource):
        collection["crs"] = {"type": "name", "properties": {"name": source.crs.to_string()}}
    return collection


class GeoJsonWriter:
    """`DIR/<stem>.geojson`: the masks of a tiled run as polygons in the image's CRS (pixel
    coordinates, y down, for an image without one), outlined from each mask's crop so no full-size
    mask is made (`core.inference.polygon_writers.GeoJsonWriter` writes untiled runs in pixels)."""

    def __init__(self, output_dir: Path, tolerance: float) -> None:
        self.output_dir = output_dir
        self.tolerance = tolerance

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / f"{job.stem}.geojson"]

    def write(self, job: ImageJob, image: Any, records: Sequence[PlacedMask]) -> None:
        with atomic_path(self.done_paths(job)[0]) as tmp:
            tmp.write_text(json.dumps(feature_collection(records, image, self.tolerance)), encoding="utf-8")

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        pass

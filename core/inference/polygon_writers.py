"""Writers of masks as outlines (core.geometry): COCO instances with polygons, GeoJSON, YOLO labels.

Coordinates are pixels in the pixel-edge convention (pixel (row r, column c) is the square
[c, c + 1] x [r, r + 1]); outlines are simplified with `tolerance` pixels. A mask with no pixel has
no outline and no entry. Every file is written atomically and outputs do not depend on the order or
batching in which images are segmented.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..io import atomic_path
from ..errors import InputError
from ..geometry import DEFAULT_TOLERANCE, Polygon, bridge_rings, mask_to_polygons, to_coco_segmentation
from .mask_writers import ImageJob, MaskRecord, read_parts, write_if_changed

POLYGONS_NAME = "instances_polygons.json"
POLYGON_PARTS_DIR = ".polygon_parts"
YOLO_LABELS_DIR = "labels"
YOLO_DATA_NAME = "data.yaml"


def prompt_index(job: ImageJob, mask_index: int, mask_count: int) -> Optional[int]:
    """The prompt a mask answers (several masks per prompt with --all-masks); None when segmenting everything."""
    if not job.prompts:
        return None
    return mask_index // max(1, mask_count // len(job.prompts))


def category_name(category_id: int) -> str:
    return "object" if category_id == 1 else f"category_{category_id}"


class _OutlineWriter:
    """What the outline writers share: the output folder and the simplification tolerance (pixels)."""

    def __init__(self, output_dir: Path, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self.output_dir = output_dir
        self.tolerance = tolerance

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        pass


class PolygonsWriter(_OutlineWriter):
    """`DIR/instances_polygons.json`: COCO instances (images, annotations, categories) whose
    segmentations are polygons, one flat polygon per connected component with its holes bridged in
    (COCO's polygons cannot hold holes; pycocotools' even-odd fill restores them). Annotations also
    carry `score` (predicted IoU), `stability_score` and `mask_index` (the mask's number in the image).

    Each image's part goes first to `DIR/.polygon_parts/<stem>.json`; `finish` joins the parts in job
    order and numbers the annotations.
    """

    def _part(self, job: ImageJob) -> Path:
        return self.output_dir / POLYGON_PARTS_DIR / f"{job.stem}.json"

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self._part(job)]

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        height, width = image.shape[:2]
        annotations = []
        for index, record in enumerate(records):
            polygons = mask_to_polygons(record.mask, self.tolerance)
            if not polygons:
                continue
            annotations.append({
                "image_id": job.image_id,
                "category_id": record.category_id,
                "segmentation": to_coco_segmentation(polygons),
                "area": record.area,
                "bbox": [float(value) for value in record.bbox],
                "iscrowd": 0,
                "score": record.predicted_iou,
                "stability_score": record.stability_score,
                "mask_index": index,
            })
        part = {"image": {"id": job.image_id, "file_name": job.key, "height": height, "width": width}, "annotations": annotations}
        with atomic_path(self._part(job)) as tmp:
            tmp.write_text(json.dumps(part), encoding="utf-8")

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        parts = read_parts([self._part(job) for job in jobs])
        annotations = [annotation for part in parts for annotation in part["annotations"]]
        for number, annotation in enumerate(annotations, start=1):
            annotation["id"] = number
        categories = sorted({annotation["category_id"] for annotation in annotations} or {1})
        document = {
            "images": [part["image"] for part in parts],
            "annotations": annotations,
            "categories": [{"id": category, "name": category_name(category)} for category in categories],
        }
        write_if_changed(self.output_dir / POLYGONS_NAME, json.dumps(document))


class GeoJsonWriter(_OutlineWriter):
    """`DIR/<stem>.geojson`: a FeatureCollection per image, one Feature per mask whose geometry is a
    MultiPolygon (RFC 7946 winding: exteriors counter-clockwise, holes clockwise, rings closed) and
    whose properties are `mask_index`, `prompt_index` (null when segmenting everything),
    `predicted_iou`, `stability_score`, `area` (pixels), `bbox` ([x, y, w, h] pixels) and
    `category_id`. The collection names its `image`, `width` and `height`.

    Coordinates are image pixels (x right, y down). A writer for other records or coordinates
    (core.tiling's, for masks kept as crops of a georeferenced image) overrides `record_polygons`,
    `output_coordinates` and `collection_members` alone.
    """

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / f"{job.stem}.geojson"]

    def record_polygons(self, record: MaskRecord) -> list[Polygon]:
        """The outline of a record's mask in image pixels, simplified by the tolerance."""
        return mask_to_polygons(record.mask, self.tolerance)

    def output_coordinates(self, image: Any, ring: np.ndarray) -> np.ndarray:
        """(K, 2) pixel (x, y) of `image` -> the (K, 2) coordinates written: here the pixels."""
        return ring

    def collection_members(self, job: ImageJob, image: np.ndarray) -> dict[str, Any]:
        """The FeatureCollection's members besides its features: the image's name and size."""
        height, width = image.shape[:2]
        return {"image": job.key, "width": width, "height": height}

    def write(self, job: ImageJob, image: Any, records: Sequence[Any]) -> None:
        features = []
        for index, record in enumerate(records):
            polygons = self.record_polygons(record)
            if not polygons:
                continue
            features.append({
                "type": "Feature",
                "geometry": {"type": "MultiPolygon", "coordinates": [self._rings(image, polygon) for polygon in polygons]},
                "properties": {
                    "mask_index": index,
                    "prompt_index": prompt_index(job, index, len(records)),
                    "predicted_iou": record.predicted_iou,
                    "stability_score": record.stability_score,
                    "area": record.area,
                    "bbox": [float(value) for value in record.bbox],
                    "category_id": record.category_id,
                },
            })
        collection = {"type": "FeatureCollection", **self.collection_members(job, image), "features": features}
        with atomic_path(self.done_paths(job)[0]) as tmp:
            tmp.write_text(json.dumps(collection), encoding="utf-8")

    def _rings(self, image: Any, polygon: Polygon) -> list[list[list[float]]]:
        """A polygon's rings as GeoJSON position lists, each closed by repeating its first position."""
        rings = []
        for ring in polygon:
            mapped = np.asarray(self.output_coordinates(image, ring), dtype=np.float64)
            rings.append(np.concatenate([mapped, mapped[:1]]).tolist())
        return rings


class YoloWriter(_OutlineWriter):
    """`DIR/labels/<stem>.txt`: YOLO segmentation labels, one line per mask, `class x1 y1 x2 y2 ...` with
    coordinates divided by the image's width and height (6 decimals). The class is the category id
    minus 1. A mask of several parts or with holes becomes one polygon whose zero-width bridges join
    its rings (an even-odd fill, as YOLO's rasterisers do, gives the mask back). `DIR/data.yaml`
    names the classes; an image without masks gets an empty label file, as YOLO expects.
    """

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / YOLO_LABELS_DIR / f"{job.stem}.txt"]

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        height, width = image.shape[:2]
        lines = []
        for record in records:
            if record.category_id < 1:
                raise InputError(f"{job.path}: YOLO classes are category ids minus 1; category {record.category_id} has none")
            rings = [ring for polygon in mask_to_polygons(record.mask, self.tolerance) for ring in polygon]
            if not rings:
                continue
            outline = bridge_rings(rings) / np.array([width, height], dtype=np.float64)
            lines.append(" ".join([str(record.category_id - 1), *(f"{value:.6f}" for value in outline.ravel())]))
        with atomic_path(self.done_paths(job)[0]) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        categories = sorted({prompt.category_id for job in jobs for prompt in job.prompts or ()} or {1})
        lines = [
            "# YOLO segmentation labels from robustsam segment: labels/<stem>.txt per image.",
            "# Put (or link) the images under images/ beside labels/ to train on them.",
            "path: .",
            "train: images",
            "val: images",
            "names:",
            *(f"  {category - 1}: {category_name(category)}" for category in categories if category >= 1),
        ]
        write_if_changed(self.output_dir / YOLO_DATA_NAME, "\n".join(lines) + "\n")

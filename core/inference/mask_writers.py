"""Writers for segmentation results: PNG masks + metadata.csv, COCO results, label images, overlays.

Each writer names the files whose presence means an image is done (`done_paths`); it writes them
last, every file atomically, so an interrupted run leaves either a finished image or none.
"""

from __future__ import annotations

import colorsys
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np

from ..io import atomic_path, encode_rle, write_image, write_mask
from ..data.prompt_files import Prompt

# The columns of segment-anything's scripts/amg.py metadata.csv.
METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,"
    "predicted_iou,stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)
COCO_RESULTS_NAME = "coco_results.json"
COCO_PARTS_DIR = ".coco_parts"
_MASK_FILE = re.compile(r"^\d+\.png$")


@dataclass
class MaskRecord:
    """One output mask with SAM's automatic-mask-generator record fields.

    mask: (H, W) bool; bbox: the mask's box (x, y, w, h) as SAM computes it; point: the input point
    (a prompt's first point, else its box centre); crop_box: (x, y, w, h) of the crop it came from.
    """

    mask: np.ndarray
    predicted_iou: float
    stability_score: float
    bbox: tuple[float, float, float, float]
    point: tuple[float, float]
    crop_box: tuple[int, int, int, int]
    category_id: int = 1

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class ImageJob:
    """One image to segment: its file, key (POSIX path relative to its input folder, names the
    outputs), prompts (None: segment everything), COCO image id, and an error known in advance."""

    path: Path
    key: str
    prompts: Optional[tuple[Prompt, ...]]
    image_id: int
    error: Optional[str] = None

    @property
    def stem(self) -> str:
        """The key without its suffix: outputs are named after it."""
        return self.key[: -len(Path(self.key).suffix)] if Path(self.key).suffix else self.key


class MaskWriter(Protocol):
    def done_paths(self, job: ImageJob) -> list[Path]:
        """Files that exist once `job` is fully written."""

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        """Writes the outputs of one image (H, W, 3) uint8 and its records."""

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        """Writes what covers the whole run, after every image."""


class PngWriter:
    """`DIR/<stem>/<k>.png` (0/255) per mask and `DIR/<stem>/metadata.csv`, like segment-anything's amg.py."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / job.stem / "metadata.csv"]

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        folder = self.output_dir / job.stem
        for index, record in enumerate(records):
            write_mask(folder / f"{index}.png", record.mask)
        # Masks numbered past this run's count are left from an earlier run with more prompts.
        if folder.is_dir():
            for stale in folder.iterdir():
                if _MASK_FILE.match(stale.name) and int(stale.stem) >= len(records):
                    stale.unlink()
        rows = [METADATA_HEADER]
        for index, record in enumerate(records):
            values = [index, record.area, *record.bbox, *record.point, record.predicted_iou, record.stability_score, *record.crop_box]
            rows.append(",".join(str(value) for value in values))
        with atomic_path(folder / "metadata.csv") as tmp:
            tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        pass


class CocoWriter:
    """One COCO results file `DIR/coco_results.json` (RLE segmentations, score = predicted IoU).

    Each image's results go first to `DIR/.coco_parts/<stem>.json` so a run can resume; `finish`
    joins the parts of every image of the run in order.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def _part(self, job: ImageJob) -> Path:
        return self.output_dir / COCO_PARTS_DIR / f"{job.stem}.json"

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self._part(job)]

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        results = [
            {
                "image_id": job.image_id,
                "file_name": job.key,
                "category_id": record.category_id,
                "segmentation": encode_rle(record.mask[None])[0],
                "score": record.predicted_iou,
            }
            for record in records
        ]
        with atomic_path(self._part(job)) as tmp:
            tmp.write_text(json.dumps(results), encoding="utf-8")

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        results = []
        for job in jobs:
            part = self._part(job)
            if part.is_file():
                results.extend(json.loads(part.read_text(encoding="utf-8")))
        text = json.dumps(results)
        path = self.output_dir / COCO_RESULTS_NAME
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")


class LabelWriter:
    """`DIR/<stem>.png`: 16-bit labels, 0 = background, k + 1 = mask k; where masks overlap the one
    with the higher predicted IoU wins."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / f"{job.stem}.png"]

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        if len(records) > np.iinfo(np.uint16).max:
            raise ValueError(f"{job.path}: {len(records)} masks do not fit a 16-bit label image")
        labels = np.zeros(image.shape[:2], dtype=np.uint16)
        for index in sorted(range(len(records)), key=lambda i: records[i].predicted_iou):
            labels[records[index].mask] = index + 1
        write_image(self.done_paths(job)[0], labels)

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        pass


def palette(count: int) -> np.ndarray:
    """(count, 3) uint8 distinct colours, the same for the same index in every image."""
    golden = 0.618033988749895
    colours = [colorsys.hsv_to_rgb((0.1 + index * golden) % 1.0, 0.75, 1.0) for index in range(count)]
    return (np.array(colours, dtype=np.float64).reshape(count, 3) * 255).round().astype(np.uint8)


class OverlayWriter:
    """`DIR/<stem>_overlay.png`: the image with masks tinted, prompt boxes outlined and prompt
    points drawn (green: foreground, red: background; automatic masks show their grid point)."""

    alpha = 0.5

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def done_paths(self, job: ImageJob) -> list[Path]:
        return [self.output_dir / f"{job.stem}_overlay.png"]

    def write(self, job: ImageJob, image: np.ndarray, records: Sequence[MaskRecord]) -> None:
        canvas = image.astype(np.float32)
        colours = palette(len(records)).astype(np.float32)
        for record, colour in zip(records, colours):
            canvas[record.mask] = (1 - self.alpha) * canvas[record.mask] + self.alpha * colour
        canvas = canvas.round().astype(np.uint8)
        thickness = max(1, min(image.shape[:2]) // 200)
        radius = max(2, min(image.shape[:2]) // 100)
        if job.prompts is None:
            for record in records:
                _disk(canvas, record.point, radius, (0, 255, 0))
        else:
            for prompt, colour in zip(job.prompts, palette(len(job.prompts))):
                if prompt.box is not None:
                    _rectangle(canvas, prompt.box, thickness, tuple(int(c) for c in colour))
                for point, label in zip(prompt.points, prompt.labels):
                    _disk(canvas, point, radius, (0, 255, 0) if label == 1 else (255, 0, 0))
        write_image(self.done_paths(job)[0], canvas)

    def finish(self, jobs: Sequence[ImageJob]) -> None:
        pass


def _rectangle(canvas: np.ndarray, box: tuple[float, ...], thickness: int, colour: tuple[int, ...]) -> None:
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, width - 1)), max(0, min(x1 - 1, width - 1))
    y0, y1 = max(0, min(y0, height - 1)), max(0, min(y1 - 1, height - 1))
    canvas[y0 : y0 + thickness, x0 : x1 + 1] = colour
    canvas[max(y1 - thickness + 1, 0) : y1 + 1, x0 : x1 + 1] = colour
    canvas[y0 : y1 + 1, x0 : x0 + thickness] = colour
    canvas[y0 : y1 + 1, max(x1 - thickness + 1, 0) : x1 + 1] = colour


def _disk(canvas: np.ndarray, point: tuple[float, float], radius: int, colour: tuple[int, ...]) -> None:
    height, width = canvas.shape[:2]
    x0, x1 = max(int(point[0]) - radius, 0), min(int(point[0]) + radius + 1, width)
    y0, y1 = max(int(point[1]) - radius, 0), min(int(point[1]) + radius + 1, height)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    inside = (xs + 0.5 - point[0]) ** 2 + (ys + 0.5 - point[1]) ** 2 <= radius**2
    canvas[y0:y1, x0:x1][inside] = colour


def make_writers(output_dir: str | os.PathLike, output_format: str, overlay: bool) -> list[MaskWriter]:
    """The writers for `output_format` ('png', 'coco' or 'label'), the overlay first when asked
    (so the format's own done file, written last, marks a finished image)."""
    output_dir = Path(output_dir)
    formats = {"png": PngWriter, "coco": CocoWriter, "label": LabelWriter}
    if output_format not in formats:
        raise ValueError(f"output_format must be one of {', '.join(formats)}, not {output_format!r}")
    writers: list[MaskWriter] = [OverlayWriter(output_dir)] if overlay else []
    writers.append(formats[output_format](output_dir))
    return writers

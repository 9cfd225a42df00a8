"""Batch segmentation of image files from prompts, or of everything in them, into mask files.

    model = build_robustsam(None, "robustsam_vit_b.pth")
    summary = segment(model, ["imgs/"], "masks/", prompts="boxes.json")

One `set_image` per image however many prompts; prompts are decoded in batches; the next images
are read from disk in a background thread while the model runs; finished images are skipped, so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import glob
import os
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from segment_anything.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    mask_to_rle_pytorch,
    rle_to_mask,
)
from torchvision.ops.boxes import batched_nms

from .amg import RobustAutomaticMaskGenerator
from ..errors import InputError
from ..data.io import read_image
from .mask_writers import ImageJob, MaskRecord, MaskWriter, make_writers
from ..model.robustsam import RobustSam
from .predictor import RobustPredictor
from ..data.prompt_files import Prompt, PromptSet, load_prompts
from .small_regions import remove_small_regions

# Masks for an (H, W, 3) uint8 image and its prompts (None: segment everything).
Segmenter = Callable[[np.ndarray, Optional[Sequence[Prompt]]], list[MaskRecord]]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
PREFETCH_IMAGES = 2


@dataclass(frozen=True)
class ImageFile:
    """An input image and its key: its POSIX path relative to the folder (or glob base) it was found in."""

    path: Path
    key: str


@dataclass
class ImageSearch:
    """The images found in the inputs, sorted by key, and the folders given as inputs."""

    images: list[ImageFile]
    folders: list[Path]


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed = parts[: next(index for index, part in enumerate(parts) if glob.has_magic(part))]
    return Path(*fixed) if fixed else Path(".")


def find_images(inputs: Sequence[str | os.PathLike], recursive: bool = False, exclude: Optional[Path] = None) -> ImageSearch:
    """Image files in folders (sub-folders too when `recursive`), glob patterns and single files,
    leaving out those under `exclude` (the output folder, which may lie inside an input folder).

    Raises InputError for an input that names nothing, or two images with one key.
    """
    found: dict[str, ImageFile] = {}
    folders: list[Path] = []
    excluded = exclude.resolve() if exclude is not None else None

    def add(path: Path, base: Path) -> None:
        if excluded is not None and path.resolve().is_relative_to(excluded):
            return
        key = path.relative_to(base).as_posix() if base != path else path.name
        if key in found and found[key].path != path:
            raise InputError(f"{path}: same relative name '{key}' as {found[key].path}")
        found[key] = ImageFile(path, key)

    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            folders.append(path)
            candidates = path.rglob("*") if recursive else path.iterdir()
            for candidate in candidates:
                if candidate.is_file() and candidate.suffix.lower() in IMAGE_SUFFIXES and not candidate.name.startswith("."):
                    add(candidate, path)
        elif path.is_file():
            add(path, path)
        elif glob.has_magic(text):
            matches = [Path(match) for match in glob.glob(text, recursive=recursive)]
            images = [match for match in matches if match.is_file() and match.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise InputError(f"{text}: matches no image file")
            for match in images:
                add(match, _glob_base(text))
        else:
            raise InputError(f"{text}: no such file or folder")
    return ImageSearch(sorted(found.values(), key=lambda image: image.key), folders)


def plan_jobs(search: ImageSearch, prompts: Optional[PromptSet] = None) -> list[ImageJob]:
    """One job per image to segment: every image found without prompts, else the images the prompts
    name. With folder inputs, an image the prompts name but no folder holds is a failed job."""
    if prompts is None:
        return [ImageJob(image.path, image.key, None, index + 1) for index, image in enumerate(search.images)]
    order = {key: index + 1 for index, key in enumerate(prompts.prompts)}
    jobs = []
    for image in search.images:
        if image.key in prompts.prompts:
            image_id = prompts.image_ids.get(image.key, order[image.key])
            jobs.append(ImageJob(image.path, image.key, tuple(prompts.prompts[image.key]), image_id))
    if search.folders:
        found = {image.key for image in search.images}
        where = ", ".join(str(folder) for folder in search.folders)
        for key, image_prompts in prompts.prompts.items():
            if key not in found:
                error = f"{prompts.source}: image '{key}' not found in {where}"
                image_id = prompts.image_ids.get(key, order[key])
                jobs.append(ImageJob(search.folders[0] / key, key, tuple(image_prompts), image_id, error))
    return jobs


def _check_output_names(jobs: Sequence[ImageJob], writers: Sequence[MaskWriter]) -> None:
    owners: dict[Path, ImageJob] = {}
    for job in jobs:
        for path in (path for writer in writers for path in writer.done_paths(job)):
            if path in owners:
                raise InputError(f"{job.path}: its output {path} would overwrite that of {owners[path].path}")
            owners[path] = job


class PromptSegmenter:
    """Masks for an image's prompts: one `set_image`, prompts decoded `batch_size` at a time.

    Prompts with the same shape (box or not, number of points) share a batch, so no padding
    changes any result: each mask equals that of the prompt decoded alone.
    """

    def __init__(self, predictor: RobustPredictor, multimask: bool = False, all_masks: bool = False, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        self.predictor = predictor
        self.multimask = multimask or all_masks
        self.all_masks = all_masks
        self.batch_size = batch_size

    def __call__(self, image: np.ndarray, prompts: Sequence[Prompt]) -> list[MaskRecord]:
        """(H, W, 3) uint8 image -> records in prompt order (three per prompt with all_masks)."""
        height, width = image.shape[:2]
        for prompt in prompts:
            prompt.check_inside(width, height)
        if not prompts:
            return []
        self.predictor.set_image(image)
        groups: dict[tuple[bool, int], list[int]] = defaultdict(list)
        for index, prompt in enumerate(prompts):
            groups[prompt.signature].append(index)
        per_prompt: dict[int, list[MaskRecord]] = {}
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                per_prompt.update(zip(chunk, self._decode([prompts[i] for i in chunk], (width, height))))
        self.predictor.reset_image()
        return [record for index in range(len(prompts)) for record in per_prompt[index]]

    def _decode(self, prompts: Sequence[Prompt], size: tuple[int, int]) -> list[list[MaskRecord]]:
        predictor = self.predictor
        original_size = predictor.original_size
        boxes = coords = labels = None
        if prompts[0].box is not None:
            boxes = predictor.transform.apply_boxes(np.array([p.box for p in prompts], dtype=np.float64), original_size)
            boxes = torch.as_tensor(boxes, dtype=torch.float, device=predictor.device)
        if prompts[0].points:
            coords = predictor.transform.apply_coords(np.array([p.points for p in prompts], dtype=np.float64), original_size)
            coords = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)
            labels = torch.as_tensor([p.labels for p in prompts], dtype=torch.int, device=predictor.device)
        logits, iou, _ = predictor.predict_torch(coords, labels, boxes, multimask_output=self.multimask, return_logits=True)
        threshold = predictor.model.mask_threshold
        if self.multimask and not self.all_masks:
            best = iou.argmax(dim=1)
            rows = torch.arange(len(prompts), device=iou.device)
            logits, iou = logits[rows, best][:, None], iou[rows, best][:, None]
        stability = calculate_stability_score(logits, threshold, 1.0)
        masks = logits > threshold
        boxes_xywh = batched_mask_to_box(masks)
        boxes_xywh[..., 2:] -= boxes_xywh[..., :2]
        boxes_xywh = boxes_xywh.tolist()
        masks, iou, stability = masks.cpu().numpy(), iou.tolist(), stability.tolist()
        crop_box = (0, 0, size[0], size[1])
        return [
            [
                MaskRecord(masks[n, c], iou[n][c], stability[n][c], tuple(boxes_xywh[n][c]), _input_point(prompt), crop_box, prompt.category_id)
                for c in range(masks.shape[1])
            ]
            for n, prompt in enumerate(prompts)
        ]


def _input_point(prompt: Prompt) -> tuple[float, float]:
    if prompt.points:
        return prompt.points[0]
    x0, y0, x1, y1 = prompt.box  # type: ignore[misc]
    return (x0 + x1) / 2, (y0 + y1) / 2


class AutomaticMaskGenerator(RobustAutomaticMaskGenerator):
    """RobustAutomaticMaskGenerator whose `min_mask_region_area` works without OpenCV."""

    def __init__(self, model: RobustSam, robust: bool = True, precision: str = "fp32", **kwargs: Any) -> None:
        # SAM's __init__ imports cv2 when min_mask_region_area > 0; set it after instead.
        min_area = kwargs.pop("min_mask_region_area", 0)
        super().__init__(model, robust=robust, precision=precision, **kwargs)
        self.min_mask_region_area = min_area

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """SamAutomaticMaskGenerator.postprocess_small_regions on `core.inference.small_regions`: fills small holes,
        drops small islands, then removes new duplicates by box NMS preferring unchanged masks."""
        if len(mask_data["rles"]) == 0:
            return mask_data
        masks, unchanged = [], []
        for rle in mask_data["rles"]:
            mask, filled = remove_small_regions(rle_to_mask(rle), min_area, mode="holes")
            mask, dropped = remove_small_regions(mask, min_area, mode="islands")
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (filled or dropped)))
        stacked = torch.stack(masks)
        boxes = batched_mask_to_box(stacked)
        keep = batched_nms(boxes.float(), torch.as_tensor(unchanged), torch.zeros(len(boxes)), iou_threshold=nms_thresh)
        for index in keep.tolist():
            if unchanged[index] == 0.0:
                mask_data["rles"][index] = mask_to_rle_pytorch(stacked[index][None])[0]
                mask_data["boxes"][index] = boxes[index]
        mask_data.filter(keep)
        return mask_data

    def __call__(self, image: np.ndarray, prompts: None = None) -> list[MaskRecord]:
        """`generate(image)` for an (H, W, 3) uint8 image as MaskRecords, in SAM's order."""
        return [
            MaskRecord(
                record["segmentation"],
                record["predicted_iou"],
                record["stability_score"],
                tuple(record["bbox"]),
                tuple(record["point_coords"][0]),
                tuple(int(v) for v in record["crop_box"]),
            )
            for record in self.generate(image)
        ]


@dataclass
class ImageResult:
    """What happened to one image: masks written, or the one-line error that stopped it."""

    job: ImageJob
    masks: int = 0
    error: Optional[str] = None


@dataclass
class SegmentSummary:
    """Counts for a whole run; `failures` holds one line per failed image."""

    images: int = 0
    skipped: int = 0
    prompts: int = 0
    masks: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _prefetch(jobs: Sequence[ImageJob], depth: int = PREFETCH_IMAGES) -> Iterator[tuple[ImageJob, Future]]:
    """Yields each job with a future of its (H, W, 3) image, reading `depth` images ahead in a thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-reader") as pool:
        futures = deque(pool.submit(read_image, job.path) for job in jobs[: depth + 1])
        for index, job in enumerate(jobs):
            if index + depth + 1 < len(jobs):
                futures.append(pool.submit(read_image, jobs[index + depth + 1].path))
            yield job, futures.popleft()


class SegmentRun:
    """A planned run: `pending` jobs to segment, `done` jobs whose outputs already exist."""

    def __init__(
        self,
        jobs: Sequence[ImageJob],
        segmenter: Segmenter,
        writers: Sequence[MaskWriter],
        overwrite: bool = False,
    ) -> None:
        _check_output_names(jobs, writers)
        self.jobs = list(jobs)
        self.segmenter = segmenter
        self.writers = list(writers)
        finished = [not overwrite and job.error is None and self._is_done(job) for job in self.jobs]
        self.pending = [job for job, done in zip(self.jobs, finished) if not done]
        self.done = [job for job, done in zip(self.jobs, finished) if done]

    def _is_done(self, job: ImageJob) -> bool:
        return all(path.is_file() for writer in self.writers for path in writer.done_paths(job))

    def run(self, on_image: Optional[Callable[[ImageResult], None]] = None) -> SegmentSummary:
        """Segments the pending jobs; an image that fails (InputError) is reported and skipped."""
        start = time.perf_counter()
        summary = SegmentSummary(skipped=len(self.done))
        for job, image_future in _prefetch(self.pending):
            result = ImageResult(job)
            try:
                if job.error is not None:
                    raise InputError(job.error)
                image = image_future.result()
                records = self.segmenter(image, job.prompts)
                for writer in self.writers:
                    writer.write(job, image, records)
                result.masks = len(records)
                summary.images += 1
                summary.prompts += len(job.prompts or ())
                summary.masks += len(records)
            except InputError as error:
                result.error = str(error)
                summary.failures.append(result.error)
            if on_image is not None:
                on_image(result)
        for writer in self.writers:
            writer.finish(self.jobs)
        summary.seconds = time.perf_counter() - start
        return summary


def prepare_run(
    model: RobustSam,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    prompts: Optional[str | os.PathLike | PromptSet] = None,
    prompt_from: str = "box",
    recursive: bool = False,
    output_format: str = "png",
    overlay: bool = False,
    multimask: bool = False,
    all_masks: bool = False,
    prompt_batch: int = 16,
    robust: bool = True,
    precision: str = "fp32",
    generator_options: Optional[dict[str, Any]] = None,
    overwrite: bool = False,
) -> SegmentRun:
    """Finds the images, reads the prompts and plans a run writing `output_format` to `output_dir`.

    Without `prompts`, every image is segmented automatically with SAM's generator parameters
    `generator_options` (points_per_side, pred_iou_thresh, ..., min_mask_region_area).
    Raises InputError for unusable inputs or prompt files.
    """
    prompt_set = load_prompts(prompts, prompt_from) if prompts is not None and not isinstance(prompts, PromptSet) else prompts
    jobs = plan_jobs(find_images(inputs, recursive, exclude=Path(output_dir)), prompt_set)
    segmenter: Segmenter
    if prompt_set is None:
        segmenter = AutomaticMaskGenerator(model, robust=robust, precision=precision, **(generator_options or {}))
    else:
        predictor = RobustPredictor(model, robust=robust, precision=precision)
        segmenter = PromptSegmenter(predictor, multimask, all_masks, prompt_batch)
    return SegmentRun(jobs, segmenter, make_writers(output_dir, output_format, overlay), overwrite)


def segment(model: RobustSam, inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, **options: Any) -> SegmentSummary:
    """`prepare_run(model, inputs, output_dir, **options).run()`."""
    return prepare_run(model, inputs, output_dir, **options).run()


"""Batch segmentation of image files from prompts, or of everything in them, into mask files.

    model = build_robustsam(None, "robustsam_vit_b.pth")
    summary = segment(model, ["imgs/"], "masks/", prompts="boxes.json")

One encoding per image however many prompts (`image_batch` images in one forward pass); prompts are
decoded in batches; the next images are read from disk on background threads while the model runs;
finished images are skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import glob
import os
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

from ..data.datasets import IMAGE_EXTENSIONS, is_image_file, list_images
from ..io import read_image, read_image_size, require_output_dir
from ..data.prompt_files import Prompt, PromptSet, load_prompts
from ..errors import InputError
from ..model.robustsam import RobustSam
from ..parallel import SLOWEST
from .amg import RobustAutomaticMaskGenerator, automatic_mask_generator
from .batching import ImageBatch, ImageBatches
from .loading import make_predictor
from .mask_writers import ImageJob, MaskRecord, MaskWriter, make_writers
from .predictor import RobustPredictor

# Masks for an (H, W, 3) uint8 image and its prompts (None: segment everything).
Segmenter = Callable[[np.ndarray, Optional[Sequence[Prompt]]], list[MaskRecord]]


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
            for candidate in list_images(path, recursive):
                add(candidate, path)
        elif path.is_file():
            add(path, path)
        elif glob.has_magic(text):
            matches = [Path(match) for match in glob.glob(text, recursive=recursive)]
            images = [match for match in matches if is_image_file(match)]
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
                present = [folder / key for folder in search.folders if (folder / key).is_file()]
                if present:  # there, but not a format the tool reads
                    error = (f"{present[0]}: unsupported image format '{present[0].suffix}' "
                             f"(supported: {', '.join(IMAGE_EXTENSIONS)})")
                else:
                    error = f"{prompts.source}: image '{prompts.name(key)}' not found in {where}"
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


def _check_prompts_inside(jobs: Sequence[ImageJob]) -> list[ImageJob]:
    """`jobs`, each checked against its image's size from the file header before anything is
    written: a job with a prompt outside its image becomes a failed job (an unreadable image is
    left to the run, which reports it as failed)."""
    checked = []
    for job in jobs:
        if job.prompts and job.error is None:
            try:
                height, width = read_image_size(job.path)
            except InputError:
                checked.append(job)
                continue
            try:
                for prompt in job.prompts:
                    prompt.check_inside(width, height)
            except InputError as error:
                job = replace(job, error=str(error))
        checked.append(job)
    return checked


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
        records = self.decode(prompts, (width, height))
        self.predictor.reset_image()
        return records

    def decode(self, prompts: Sequence[Prompt], size: tuple[int, int]) -> list[MaskRecord]:
        """Records in prompt order for the image already set in the predictor, of `size` (W, H)."""
        groups: dict[tuple[bool, int], list[int]] = defaultdict(list)
        for index, prompt in enumerate(prompts):
            groups[prompt.signature].append(index)
        per_prompt: dict[int, list[MaskRecord]] = {}
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                per_prompt.update(zip(chunk, self._decode([prompts[i] for i in chunk], size)))
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
                MaskRecord(masks[n, c], iou[n][c], stability[n][c], tuple(boxes_xywh[n][c]), input_point(prompt), crop_box, prompt.category_id)
                for c in range(masks.shape[1])
            ]
            for n, prompt in enumerate(prompts)
        ]


def input_point(prompt: Prompt) -> tuple[float, float]:
    """The point a mask record names for its prompt: the first point, else the box centre."""
    if prompt.points:
        return prompt.points[0]
    x0, y0, x1, y1 = prompt.box  # type: ignore[misc]
    return (x0 + x1) / 2, (y0 + y1) / 2


class AutomaticSegmenter:
    """Masks of everything in an image: `generator.generate(image)` as MaskRecords, in SAM's order."""

    def __init__(self, generator: RobustAutomaticMaskGenerator) -> None:
        self.generator = generator

    def __call__(self, image: np.ndarray, prompts: None = None) -> list[MaskRecord]:
        """(H, W, 3) uint8 image -> one record per generated mask."""
        return [
            MaskRecord(
                record["segmentation"],
                record["predicted_iou"],
                record["stability_score"],
                tuple(record["bbox"]),
                tuple(record["point_coords"][0]),
                tuple(int(v) for v in record["crop_box"]),
            )
            for record in self.generator.generate(image)
        ]


@dataclass
class ImageResult:
    """What happened to one image: masks written, or the one-line error that stopped it."""

    job: ImageJob
    masks: int = 0
    error: Optional[str] = None


@dataclass
class SegmentSummary:
    """Counts for a whole run; `failures` holds one line per failed image, `empty` the path of each
    image segmented without error that got no mask."""

    images: int = 0
    skipped: int = 0
    prompts: int = 0
    masks: int = 0
    failures: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    seconds: float = field(default=0.0, metadata=SLOWEST)  # merged: the slowest worker's


def _read_job(job: ImageJob, reader: Callable[[Path], Any] = read_image) -> Any:
    """`reader(job.path)`: the (H, W, 3) image of a job, or a windowed source of it; InputError for a
    job failed in advance or an unreadable file."""
    if job.error is not None:
        raise InputError(job.error)
    return reader(job.path)


def _close(image_future: Future) -> None:
    """Closes the file a windowed source holds open (pixels in memory need nothing)."""
    if image_future.done() and image_future.exception() is None and hasattr(image_future.result(), "close"):
        image_future.result().close()


class SegmentRun:
    """A planned run: `pending` jobs to segment, `done` jobs whose outputs already exist. `batches`
    reads and encodes the images (by default: read ahead, each encoded by the segmenter).

    `reader` opens an image file for the segmenter and writers: by default its (H, W, 3) pixels; a
    tiled run passes `core.tiling.open_source`, a windowed reader closed after the image.
    """

    def __init__(
        self,
        jobs: Sequence[ImageJob],
        segmenter: Segmenter,
        writers: Sequence[MaskWriter],
        overwrite: bool = False,
        batches: Optional[ImageBatches] = None,
        reader: Callable[[Path], Any] = read_image,
        write_behind: bool = True,
    ) -> None:
        _check_output_names(jobs, writers)
        self.write_behind = write_behind
        self.jobs = list(jobs)
        self.segmenter = segmenter
        self.writers = list(writers)
        self.batches = batches if batches is not None else ImageBatches(None)
        self.reader = reader
        finished = [not overwrite and job.error is None and self._is_done(job) for job in self.jobs]
        self.pending = [job for job, done in zip(self.jobs, finished) if not done]
        self.done = [job for job, done in zip(self.jobs, finished) if done]

    def _is_done(self, job: ImageJob) -> bool:
        return all(path.is_file() for writer in self.writers for path in writer.done_paths(job))

    def run(self, on_image: Optional[Callable[[ImageResult], None]] = None, finish: bool = True) -> SegmentSummary:
        """Segments the pending jobs; an image that fails (InputError) is reported and skipped.
        `finish=False` leaves joining the outputs of all jobs (COCO results) to a later `finish()`.

        One image's outputs are written on a background thread while the next image is segmented
        (encoding PNGs costs as much as the model on a GPU); writes stay in job order, one image at a
        time, and an error in them (a full disk) stops the run as before. `write_behind=False` (the
        plain version, for comparison) waits for each image's writes before segmenting the next."""
        start = time.perf_counter()
        summary = SegmentSummary(skipped=len(self.done))
        in_flight: Optional[tuple[ImageResult, list[MaskRecord], Future]] = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mask-writer") as writing:
            for job, image_future in self.batches(self.pending, lambda job: _read_job(job, self.reader)):
                result, records = ImageResult(job), None
                try:
                    records = self.segmenter(image_future.result(), job.prompts)
                except InputError as error:
                    result.error = str(error)
                finally:
                    if records is None:  # no write will close it
                        _close(image_future)
                if in_flight is not None:
                    self._written(*in_flight, summary, on_image)
                in_flight = None
                if records is None:
                    self._written(result, [], None, summary, on_image)
                else:
                    in_flight = (result, records, writing.submit(self._write, job, image_future, records))
                if in_flight is not None and not self.write_behind:
                    self._written(*in_flight, summary, on_image)
                    in_flight = None
            if in_flight is not None:
                self._written(*in_flight, summary, on_image)
        if finish:
            self.finish()
        summary.seconds = time.perf_counter() - start
        return summary

    def _write(self, job: ImageJob, image_future: Future, records: list[MaskRecord]) -> None:
        try:
            for writer in self.writers:
                writer.write(job, image_future.result(), records)
        finally:
            _close(image_future)

    @staticmethod
    def _written(result: ImageResult, records: list[MaskRecord], write: Optional[Future], summary: SegmentSummary,
                 on_image: Optional[Callable[[ImageResult], None]]) -> None:
        """Waits for one image's writes (re-raising what is not an InputError) and counts the image."""
        try:
            if write is not None:
                write.result()
                result.masks = len(records)
                summary.images += 1
                summary.prompts += len(result.job.prompts or ())
                summary.masks += len(records)
                if not records:
                    summary.empty.append(str(result.job.path))
        except InputError as error:
            result.error = str(error)
        if result.error is not None:
            summary.failures.append(result.error)
        if on_image is not None:
            on_image(result)

    def finish(self) -> None:
        """Joins the per-image outputs of every job (COCO results file)."""
        for writer in self.writers:
            writer.finish(self.jobs)


def prepare_run(
    model: Optional[RobustSam],
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    prompts: Optional[str | os.PathLike | PromptSet] = None,
    prompt_from: str = "box",
    recursive: bool = False,
    output_format: str = "png",
    polygon_tolerance: Optional[float] = None,
    overlay: bool = False,
    multimask: bool = False,
    all_masks: bool = False,
    prompt_batch: int = 16,
    robust: bool = True,
    precision: str = "fp32",
    generator_options: Optional[dict[str, Any]] = None,
    overwrite: bool = False,
    predictor: Optional[SamPredictor] = None,
    image_batch: ImageBatch = 1,
    tile: Optional[int] = None,
    tile_overlap: int = 0,
    prompt_coords: str = "pixel",
) -> SegmentRun:
    """Finds the images, reads the prompts and plans a run writing `output_format` to `output_dir`.

    Without `prompts`, every image is segmented automatically with SAM's generator parameters
    `generator_options` (points_per_side, pred_iou_thresh, ..., min_mask_region_area).
    Raises InputError for unusable inputs or prompt files. `model` is a RobustSam or a GleSam
    (`core.inference.open_model` opens either); `predictor` runs instead of its predictor (`model` may
    then be None): any SamPredictor-shaped predictor, such as `core.deploy.OnnxPredictor`; `robust`
    and `precision` are then its own. `image_batch` images (a number, or 'auto') are encoded in one
    forward pass; the outputs are the same for every value.

    `tile` (pixels) segments each image in overlapping `tile` x `tile` windows read one at a time
    (`core.tiling`), `tile_overlap` pixels shared by neighbours (each tile encoded on its own, so
    `image_batch` does not apply); 'label' output is then a tiled TIFF `DIR/<stem>.tif`, 'geojson'
    is in the image's CRS. `prompt_coords='map'`: prompts are in the map coordinates of each
    image's GeoTIFF CRS (the `geo` extra).
    """
    # core.tiling builds on this module's segmenters, so it is imported here.
    from ..tiling import check_tiling, map_prompts_to_pixels, open_source, tile_segmenter, tiled_writers

    if prompt_coords not in ("pixel", "map"):
        raise ValueError(f"prompt_coords must be 'pixel' or 'map', not {prompt_coords!r}")
    if tile is not None:
        check_tiling(tile, tile_overlap)
        if overlay:
            raise InputError("--overlay draws on the whole image in memory; leave it out with --tile")
    require_output_dir(output_dir)
    prompt_set = load_prompts(prompts, prompt_from) if prompts is not None and not isinstance(prompts, PromptSet) else prompts
    jobs = plan_jobs(find_images(inputs, recursive, exclude=Path(output_dir)), prompt_set)
    if prompt_coords == "map":
        jobs = [replace(job, prompts=map_prompts_to_pixels(job.path, job.prompts)) if job.prompts and job.error is None else job
                for job in jobs]
    jobs = _check_prompts_inside(jobs)
    segmenter: Segmenter
    predictor = predictor if predictor is not None else make_predictor(model, robust=robust, precision=precision)
    if prompt_set is None:
        generator = automatic_mask_generator(predictor, **(generator_options or {}))
        segmenter = AutomaticSegmenter(generator)
    else:
        segmenter = PromptSegmenter(predictor, multimask, all_masks, prompt_batch)
    if tile is not None:
        return SegmentRun(jobs, tile_segmenter(segmenter, tile, tile_overlap), tiled_writers(output_dir, output_format, polygon_tolerance),
                          overwrite, reader=open_source)
    writers = make_writers(output_dir, output_format, overlay, polygon_tolerance)
    return SegmentRun(jobs, segmenter, writers, overwrite, ImageBatches(predictor, image_batch))


def segment(model: Optional[RobustSam], inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, **options: Any) -> SegmentSummary:
    """`prepare_run(model, inputs, output_dir, **options).run()`."""
    return prepare_run(model, inputs, output_dir, **options).run()


"""Writing the Robust-Seg layout from a folder of clear images: `clear/`, `masks/*.npy` and one
folder per degradation, batched by image size, resumable.

    run = plan_degrade("clear_images/", "robust_seg/", ["fog", "snow"], masks_dir="masks/")
    summary = run.run()

Planning checks every input before anything is written: the output folder, each image's size
(from its header) and, with `masks_dir`, every image's masks against that size. An image whose
header cannot be read, or whose pixels cannot be decoded, is a failure of that image alone: it
is reported in `summary.failures` and the others go on. Finished files are kept, so a killed run
resumes; each file depends only on (seed, type, file name), so a resumed run writes the same bytes.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..data.datasets import IMAGE_EXTENSIONS, list_images, read_masks
from ..io import read_image, read_image_size, require_output_dir
from ..errors import InputError
from ..parallel import SAME, SLOWEST
from .dataset import copy_clear, file_seed, find_mask, save_image, save_masks
from .preview import CLEAR, apply, to_tensor, to_uint8

MASKS = "masks"


@dataclass(frozen=True)
class DegradeJob:
    """One clear image: its file, its (H, W) from the header and its mask source (None: no masks)."""

    path: Path
    size: tuple[int, int]
    mask_source: Optional[Path] = None


@dataclass
class DegradeSummary:
    """Counts per output folder (written now, kept from an earlier run, seconds spent) and one line
    per image that failed."""

    folders: list[str] = field(metadata=SAME)
    written: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict, metadata=SLOWEST)  # merged: the slowest worker's
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for counts in (self.written, self.kept, self.seconds):
            for folder in self.folders:
                counts.setdefault(folder, 0)


def _checked_masks(source: Path, size: tuple[int, int]) -> np.ndarray:
    """(M, H, W) bool masks of `source`; InputError when they are not of the image's (H, W) size."""
    masks = read_masks(source)
    if masks.shape[1:] != size:
        height, width = size
        raise InputError(f"{source}: masks are {masks.shape[2]}x{masks.shape[1]}, the image is {width}x{height}")
    return masks


class DegradeRun:
    """A planned run over `jobs`, written `batch_size` images at a time (`chunks`); `failures` holds
    the images refused while planning."""

    def __init__(
        self,
        jobs: Sequence[DegradeJob],
        kinds: Sequence[str],
        output: Path,
        *,
        level: int,
        seed: int,
        device: torch.device,
        batch_size: int,
        overwrite: bool,
        failures: Sequence[str] = (),
    ) -> None:
        self.jobs = list(jobs)
        self.kinds = list(kinds)
        self.output = output
        self.level = level
        self.seed = seed
        self.device = device
        self.batch_size = batch_size
        self.overwrite = overwrite
        self.failures = list(failures)
        self.with_masks = any(job.mask_source is not None for job in self.jobs)
        # A shard of the run keeps whole chunks, so its batches (and their float sums) are these.
        self.chunks = [self.jobs[start : start + batch_size] for start in range(0, len(self.jobs), batch_size)]

    @property
    def folders(self) -> list[str]:
        """The output folders, in the order they are written."""
        return [CLEAR] + ([MASKS] if self.with_masks else []) + self.kinds

    def run(self, on_progress: Optional[Callable[[int, Sequence[str]], None]] = None) -> DegradeSummary:
        """Writes every missing output; `on_progress(n, failures)` after each chunk of n images,
        with the one-line errors of the images of that chunk that could not be decoded."""
        summary = DegradeSummary(self.folders, failures=list(self.failures))
        for chunk in self.chunks:
            known = len(summary.failures)
            self._chunk(chunk, summary)
            if on_progress is not None:
                on_progress(len(chunk), summary.failures[known:])
        return summary

    def _missing(self, folder: str, name: str) -> bool:
        return self.overwrite or not (self.output / folder / name).exists()

    def _chunk(self, chunk: Sequence[DegradeJob], summary: DegradeSummary) -> None:
        """Writes the missing outputs of a few images; images of one size are degraded as one batch."""
        pending = {job: [k for k in self.kinds if self._missing(k, job.path.name)] for job in chunk}
        images: dict[DegradeJob, np.ndarray] = {}
        failed: set[DegradeJob] = set()
        for job in chunk:
            mask_name = f"{job.path.stem}.npy"
            wants_mask = job.mask_source is not None and self._missing(MASKS, mask_name)
            # A batch keeps the same members when a run resumes (so its floats sum in the same
            # order): every image of a group is read if any output of the group is missing.
            if wants_mask or any(pending[other] and other.size == job.size for other in chunk):
                try:
                    images[job] = read_image(job.path)
                except InputError as error:
                    summary.failures.append(str(error))
                    failed.add(job)
                    continue
            self._timed(summary, CLEAR, self._missing(CLEAR, job.path.name),
                        lambda: copy_clear(job.path, self.output / CLEAR / job.path.name))
            if job.mask_source is not None:
                self._timed(summary, MASKS, wants_mask,
                            lambda: save_masks(self.output / MASKS / mask_name, _checked_masks(job.mask_source, job.size)))
        for job in chunk:
            if job not in failed:
                for kind in self.kinds:
                    summary.kept[kind] += kind not in pending[job]
        batches: dict[tuple[DegradeJob, ...], torch.Tensor] = {}  # one float batch per size, for every type
        buffers: dict[torch.Size, torch.Tensor] = {}  # one output buffer per batch shape, for every type
        for kind in self.kinds:
            by_size: dict[tuple[int, int], list[DegradeJob]] = defaultdict(list)
            for job in chunk:
                if job in images:
                    by_size[job.size].append(job)
            for group in by_size.values():
                todo = [job for job in group if kind in pending[job]]
                if not todo:
                    continue
                start = time.perf_counter()
                key = tuple(group)
                if key not in batches:
                    batches[key] = torch.cat([to_tensor(images[job], self.device) for job in group])
                batch = batches[key]
                if batch.shape not in buffers:
                    buffers[batch.shape] = torch.empty_like(batch)
                seeds = [file_seed(self.seed, kind, job.path.name) for job in group]
                degraded = to_uint8(apply(batch, kind, self.level, seeds, out=buffers[batch.shape]))
                for job, picture in zip(group, degraded):
                    if kind in pending[job]:
                        save_image(self.output / kind / job.path.name, picture)
                summary.written[kind] += len(todo)
                summary.seconds[kind] += time.perf_counter() - start

    @staticmethod
    def _timed(summary: DegradeSummary, folder: str, write: bool, writer: Callable[[], None]) -> None:
        if not write:
            summary.kept[folder] += 1
            return
        start = time.perf_counter()
        writer()
        summary.written[folder] += 1
        summary.seconds[folder] += time.perf_counter() - start


def plan_degrade(
    source: str | os.PathLike,
    output: str | os.PathLike,
    kinds: Sequence[str],
    *,
    masks_dir: Optional[str | os.PathLike] = None,
    level: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    overwrite: bool = False,
) -> DegradeRun:
    """Checks every input and plans the run; nothing is written.

    Raises InputError for a bad output folder, a source that is not a folder, and a missing or
    wrong-size mask. An image whose header is unreadable is left out and listed in `failures`.
    A source without images gives a run with no jobs (the caller decides whether that is an error).
    """
    source, output = Path(source), require_output_dir(output)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    if not source.is_dir():
        raise InputError(f"{source}: not a folder of images ({', '.join(IMAGE_EXTENSIONS)})")
    jobs, failures = [], []
    for path in list_images(source):
        try:
            size = read_image_size(path)
        except InputError as error:
            failures.append(str(error))
            continue
        mask_source = None
        if masks_dir is not None:
            mask_source = find_mask(Path(masks_dir), path)
            _checked_masks(mask_source, size)
        jobs.append(DegradeJob(path, size, mask_source))
    return DegradeRun(jobs, kinds, output, level=level, seed=seed, device=torch.device(device),
                      batch_size=batch_size, overwrite=overwrite, failures=failures)

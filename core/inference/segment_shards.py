"""`segment` split over shards: each shard segments its share, the last one to finish merges.

The split depends only on the planned jobs (prompt count x image area), so every shard, however
started (`--shard K/N`, torchrun ranks), computes it alike; outputs are per image, and COCO parts
are joined in job order, so the files do not depend on the split.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..parallel import Shard, counter, image_area, mark_done, shard_items, worker_device
from .loading import ModelChoice
from .mask_writers import ImageJob
from .segment import ImageResult, SegmentRun, SegmentSummary, prepare_run


@dataclass
class SegmentOptions:
    """The keyword options of `prepare_run` that a launched job passes to its workers."""

    prompts: Optional[Path] = None
    prompt_from: str = "box"
    recursive: bool = False
    output_format: str = "png"
    overlay: bool = False
    multimask: bool = False
    all_masks: bool = False
    prompt_batch: int = 16
    robust: bool = True
    precision: str = "fp32"
    generator_options: dict[str, float] = field(default_factory=dict)
    overwrite: bool = False


@dataclass
class SegmentLaunch:
    """What every worker of a launched `segment` needs: the model, the inputs, the output folder, the options."""

    model: ModelChoice
    cuda: bool
    inputs: list[str]
    output_dir: Path
    options: SegmentOptions


def job_weights(jobs: Sequence[ImageJob]) -> list[float]:
    """Work per job: image area (from the file header) x number of prompts (1 for segment-everything)."""
    return [image_area(job.path) * max(1, len(job.prompts or ())) for job in jobs]


def shard_run(run: SegmentRun, shard: Shard) -> SegmentRun:
    """The part of `run` that `shard` does: its jobs' pending and done lists (all jobs kept for merging)."""
    mine = {job.key for job in shard_items(run.jobs, job_weights(run.jobs), shard)}
    part = copy.copy(run)
    part.pending = [job for job in run.pending if job.key in mine]
    part.done = [job for job in run.done if job.key in mine]
    return part


def run_shard(run: SegmentRun, shard: Shard, output_dir: str | os.PathLike,
              on_image: Optional[Callable[[ImageResult], None]] = None) -> tuple[SegmentSummary, bool]:
    """Runs `shard`'s part of `run`, marks it done, and merges (COCO results) once every shard of
    its count is done. Returns the shard's summary and whether this call merged."""
    summary = shard_run(run, shard).run(on_image, finish=False)
    complete = mark_done(output_dir, shard, summary)
    if complete:
        run.finish()
    return summary, complete


def segment_worker(job: SegmentLaunch, shard: Shard, progress: Callable[[int, int], None]) -> SegmentSummary:
    """torchrun entry: opens the model on this rank's device and runs its shard; returns the summary."""
    options: dict[str, Any] = vars(job.options)
    run = prepare_run(job.model.open(worker_device(job.cuda)), job.inputs, job.output_dir, **options)
    advance = counter(progress, len(shard_run(run, shard).pending))
    summary, _ = run_shard(run, shard, job.output_dir, lambda result: advance())
    return summary

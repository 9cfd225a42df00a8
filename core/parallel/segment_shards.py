"""`segment` split over shards: each shard segments its share, the last one to finish merges.

The split depends only on the planned jobs (prompt count x image area), so every shard, however
started (`--shard K/N`, torchrun ranks), computes it alike; outputs are per image, and COCO parts
are joined in job order, so the files do not depend on the split.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict
from typing import Any, Callable, Optional, Sequence

from ..inference.mask_writers import ImageJob
from ..inference.segment import ImageResult, SegmentRun, SegmentSummary, prepare_run
from .job import counter, image_area, mark_done, worker_model
from .shard import Shard, shard_items


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
    complete = mark_done(output_dir, shard, asdict(summary))
    if complete:
        run.finish()
    return summary, complete


def segment_worker(shard: Shard, progress: Callable[[int, int], None], build: dict[str, Any],
                   inputs: list[str], output_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """torchrun entry: builds the model on this rank's device and runs its shard; returns the summary."""
    run = prepare_run(worker_model(build), inputs, output_dir, **options)
    advance = counter(progress, len(shard_run(run, shard).pending))
    summary, _ = run_shard(run, shard, output_dir, lambda result: advance())
    return asdict(summary)


def add_summaries(summaries: Sequence[dict[str, Any]]) -> SegmentSummary:
    """One summary counting every worker; time is the slowest worker's."""
    total = SegmentSummary()
    for part in summaries:
        for name in ("images", "skipped", "prompts", "masks"):
            setattr(total, name, getattr(total, name) + part[name])
        total.failures += part["failures"]
        total.empty += part["empty"]
        total.seconds = max(total.seconds, part["seconds"])
    return total

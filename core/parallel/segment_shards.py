"""`segment` split over shards: each shard segments its share, the last one to finish merges.

The split depends only on the planned jobs (prompt count x image area), so every shard, however
started (`--shard K/N`, torchrun ranks), computes it alike; outputs are per image, and COCO parts
are joined in job order, so the files do not depend on the split.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..data.io import atomic_path, read_image_size
from ..errors import InputError
from ..inference.mask_writers import ImageJob
from ..inference.segment import ImageResult, SegmentRun, SegmentSummary, prepare_run
from .shard import Shard, assign_shards

STATE_DIR = ".parallel"


def job_weights(jobs: Sequence[ImageJob]) -> list[float]:
    """Work per job: image area (from the file header) x number of prompts (1 for segment-everything)."""
    weights = []
    for job in jobs:
        try:
            height, width = read_image_size(job.path)
        except InputError:
            height = width = 1  # fails fast in the run
        weights.append(float(height * width * max(1, len(job.prompts or ()))))
    return weights


def shard_run(run: SegmentRun, shard: Shard) -> SegmentRun:
    """The part of `run` that `shard` does: its jobs' pending and done lists (all jobs kept for merging)."""
    owner = dict(zip((job.key for job in run.jobs), assign_shards(job_weights(run.jobs), shard.count)))
    part = copy.copy(run)
    part.pending = [job for job in run.pending if owner[job.key] == shard.index]
    part.done = [job for job in run.done if owner[job.key] == shard.index]
    return part


def run_shard(run: SegmentRun, shard: Shard, output_dir: str | os.PathLike,
              on_image: Optional[Callable[[ImageResult], None]] = None) -> tuple[SegmentSummary, bool]:
    """Runs `shard`'s part of `run`, marks it done, and merges (COCO results) once every shard of
    its count is done. Returns the shard's summary and whether this call merged."""
    summary = shard_run(run, shard).run(on_image, finish=False)
    state = Path(output_dir) / STATE_DIR
    with atomic_path(state / f"done-{shard.name}.json") as tmp:
        tmp.write_text(json.dumps(asdict(summary)), encoding="utf-8")
    complete = all((state / f"done-{index}-of-{shard.count}.json").is_file() for index in range(shard.count))
    if complete:
        run.finish()
    return summary, complete


def segment_worker(shard: Shard, progress: Callable[[int, int], None], build: dict[str, Any],
                   inputs: list[str], output_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """torchrun entry: builds the model on this rank's device and runs its shard; returns the summary."""
    from ..model.build import build_robustsam

    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if build.pop("cuda", False) else torch.device("cpu")
    model = build_robustsam(build["model_type"], build["checkpoint"], sam_checkpoint=build["sam_checkpoint"], device=device)
    run = prepare_run(model, inputs, output_dir, **options)
    part = shard_run(run, shard)
    done = 0
    progress(done, len(part.pending))

    def count(result: ImageResult) -> None:
        nonlocal done
        done += 1
        progress(done, len(part.pending))

    summary, _ = run_shard(run, shard, output_dir, count)
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

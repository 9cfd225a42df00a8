"""`degrade` split over shards: each shard writes the files of its images and nothing else.

Every file depends only on (seed, type, file name) and on the batch its image is degraded in, so a
shard takes whole batches as one process forms them; its files are then byte for byte those of
one process. There is nothing to merge; summaries add up.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

from ..degradations.run import DegradeRun, DegradeSummary, plan_degrade
from .job import counter, worker_device
from .shard import Shard, shard_items


def degrade_part(run: DegradeRun, shard: Optional[Shard]) -> DegradeRun:
    """The part of `run` that `shard` writes: whole chunks, balanced by pixels; shard 0 also reports
    the images refused while planning. The run itself for None."""
    if shard is None:
        return run
    weights = [float(sum(height * width for height, width in (job.size for job in chunk))) for chunk in run.chunks]
    part = copy.copy(run)
    part.chunks = shard_items(run.chunks, weights, shard)
    part.jobs = [job for chunk in part.chunks for job in chunk]
    part.failures = run.failures if shard.index == 0 else []
    return part


def degrade_worker(shard: Shard, progress: Callable[[int, int], None], cuda: bool, source: str, output: str,
                   kinds: list[str], **options: Any) -> dict[str, Any]:
    """torchrun entry: plans the run (`plan_degrade` keyword `options`), writes this rank's part on
    its device; returns its summary."""
    run = degrade_part(plan_degrade(source, output, kinds, device=worker_device(cuda), **options), shard)
    advance = counter(progress, len(run.jobs))
    summary = run.run(lambda images, failures: advance(images))
    counts = {name: dict(getattr(summary, name)) for name in ("written", "kept", "seconds")}  # plain dicts for JSON
    return {"folders": summary.folders, "failures": summary.failures, **counts}


def add_degrade_summaries(parts: Sequence[dict[str, Any]]) -> DegradeSummary:
    """One summary counting every worker; a folder's time is the slowest worker's."""
    total = DegradeSummary(parts[0]["folders"])
    for part in parts:
        for folder in total.folders:
            total.written[folder] += part["written"].get(folder, 0)
            total.kept[folder] += part["kept"].get(folder, 0)
            total.seconds[folder] = max(total.seconds[folder], part["seconds"].get(folder, 0.0))
        total.failures += part["failures"]
    return total

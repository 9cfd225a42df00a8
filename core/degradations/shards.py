"""`degrade` split over shards: each shard writes the files of its images and nothing else.

Every file depends only on (seed, type, file name) and on the batch its image is degraded in, so a
shard takes whole batches as one process forms them; its files are then byte for byte those of
one process. There is nothing to merge; summaries add up (`core.parallel.merge`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..parallel import Shard, counter, shard_items, worker_device
from .run import DegradeRun, DegradeSummary, plan_degrade


@dataclass
class DegradeLaunch:
    """What every worker of a launched `degrade` needs: `plan_degrade`'s arguments and the device kind."""

    source: Path
    output: Path
    kinds: list[str]
    masks_dir: Optional[Path] = None
    level: int = 3
    seed: int = 0
    batch_size: int = 8
    overwrite: bool = False
    cuda: bool = False


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


def degrade_worker(job: DegradeLaunch, shard: Shard, progress: Callable[[int, int], None]) -> DegradeSummary:
    """torchrun entry: plans the run, writes this rank's part on its device; returns its summary."""
    run = degrade_part(plan_degrade(job.source, job.output, job.kinds, masks_dir=job.masks_dir, level=job.level, seed=job.seed,
                                    device=worker_device(job.cuda), batch_size=job.batch_size, overwrite=job.overwrite), shard)
    advance = counter(progress, len(run.jobs))
    return run.run(lambda images, failures: advance(images))

"""`eval` split over shards: each shard evaluates its images of the plan into its own part of the
result caches; whoever merges reads every part (`collect_results`).

Every process plans alike (`EvalPlan`: same images, same prompts, same weights), so the split is
the same however the shards were started, and the merged tables equal one process's to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from ..data.datasets import DatasetSpec
from ..parallel import Shard, counter, mark_done, shard_items, worker_device
from .prompt_sampling import PromptBook
from .protocol import CACHE_DIR, EvalItem, EvalPlan, EvalSettings, ModelSpec, score_items


@dataclass
class EvalLaunch:
    """What every worker of a launched `eval` needs: the models, the datasets, the launcher's
    prompts (so every worker plans alike), the output folder, the settings."""

    models: list[ModelSpec]
    datasets: list[DatasetSpec]
    prompts_file: Path
    output_dir: Path
    settings: EvalSettings
    cuda: bool


@dataclass
class EvalPartSummary:
    """What one worker did: images evaluated, and its notes (e.g. a model's missing robust modules)."""

    images: int = 0
    notes: list[str] = field(default_factory=list)


def plan_part(plan: EvalPlan, shard: Optional[Shard]) -> list[EvalItem]:
    """The images of `plan` that `shard` evaluates (all of them for None)."""
    return shard_items(plan.items, [item.weight for item in plan.items], shard)


def eval_worker(job: EvalLaunch, shard: Shard, progress: Callable[[int, int], None]) -> EvalPartSummary:
    """torchrun entry: plans with the launcher's prompts, evaluates this rank's images on its device
    and marks its shard done (a later `--shard` run can then merge); returns what it did."""
    failures: list[str] = []  # the parent reports them, from the plan it made and the merged caches
    plan = EvalPlan(job.datasets, PromptBook.load(job.prompts_file), job.settings.limit, failures.append)
    items = plan_part(plan, shard)
    advance = counter(progress, len(items) * len(job.models))
    summary = EvalPartSummary(len(items))
    score_items(job.models, plan, job.output_dir / CACHE_DIR, replace(job.settings, device=str(worker_device(job.cuda))),
                lambda model: advance(), summary.notes.append, failures.append, items=items, part=shard.name)
    mark_done(job.output_dir, shard, summary)
    return summary

"""`eval` split over shards: each shard evaluates its images of the plan into its own part of the
result caches; whoever merges reads every part (`core.evaluation.collect_results`).

Every process plans alike (`EvalPlan`: same images, same prompts, same weights), so the split is
the same however the shards were started, and the merged tables equal one process's to the bit.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from ..data.datasets import DatasetSpec
from ..evaluation.prompt_sampling import PromptBook
from ..evaluation.protocol import CACHE_DIR, EvalItem, EvalPlan, EvalSettings, ModelSpec, evaluate
from .job import counter, mark_done, worker_device
from .shard import Shard, shard_items


def plan_part(plan: EvalPlan, shard: Optional[Shard]) -> list[EvalItem]:
    """The images of `plan` that `shard` evaluates (all of them for None)."""
    return shard_items(plan.items, [item.weight for item in plan.items], shard)


def eval_job(models: list[str], plan: EvalPlan, prompts_file: Path, output_dir: Path, settings: EvalSettings,
             cuda: bool) -> dict[str, Any]:
    """The JSON keyword arguments of `eval_worker` for a planned run of the `models` ('NAME=CKPT[:sam]',
    as `ModelSpec.parse` reads them) whose prompts were saved to `prompts_file`, caches in OUTPUT/cache."""
    return {
        "models": list(models),
        "datasets": [{"name": d.name, "format": d.format, "paths": {k: str(v) for k, v in d.paths.items()}} for d in plan.datasets],
        "prompts_file": str(prompts_file),
        "output_dir": str(output_dir),
        "settings": asdict(settings),
        "cuda": cuda,
    }


def eval_worker(shard: Shard, progress: Callable[[int, int], None], models: list[str], datasets: list[dict[str, Any]],
                prompts_file: str, output_dir: str, settings: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """torchrun entry: plans with the launcher's prompts, evaluates this rank's images on its device
    and marks its shard done (a later `--shard` run can then merge); returns how many images it
    went through and the notes it made."""
    specs = [ModelSpec.parse(text) for text in models]
    specs_datasets = [DatasetSpec(d["name"], d["format"], {k: Path(v) for k, v in d["paths"].items()}) for d in datasets]
    failures: list[str] = []  # the parent reports them, from the plan it made and the merged caches
    plan = EvalPlan(specs_datasets, PromptBook.load(prompts_file), settings["limit"], failures.append)
    items = plan_part(plan, shard)
    run_settings = EvalSettings(**{**settings, "device": str(worker_device(cuda))})
    advance = counter(progress, len(items) * len(specs))
    notes: list[str] = []
    evaluate(specs, plan, Path(output_dir) / CACHE_DIR, run_settings, lambda model: advance(), notes.append,
             failures.append, items=items, part=shard.name)
    summary = {"images": len(items), "notes": notes}
    mark_done(output_dir, shard, summary)
    return summary

"""A whole evaluation run and its document: `evaluate` scores every model on a plan and writes
OUT/prompts.json, OUT/results.json, OUT/results.md and OUT/charts/*.png, the files `robustsam eval`
writes; `write_run` writes them from results already scored (the merge of a split run).

    plan = EvalPlan(split_datasets("zeroshot", "robustseg"), PromptBook(seed=0))
    run = evaluate([ModelSpec.parse("robustsam=default")], plan, Path("eval-out"), EvalSettings())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import OnFailure
from ..inference.loading import checkpoint_method
from ..io import write_json, write_text
from .protocol import CACHE_DIR, EvalPlan, EvalSettings, ModelSpec, Results, Table, build_tables, score_items, table_metrics
from .report import markdown, results_document, write_charts

CHART_METRIC = "iou"


@dataclass
class EvalRun:
    """What a run wrote: its tables, metric columns and files; `charts_skipped` says why there are
    no charts (matplotlib is not installed) when there are none."""

    tables: list[Table]
    metrics: tuple[str, ...]
    files: list[Path]
    charts: list[Path] = field(default_factory=list)
    charts_skipped: Optional[str] = None


def decoder_path(spec: ModelSpec) -> str:
    """What results.json calls the model's path: 'glesam' (GleSAM has one), else 'robust' or 'sam'."""
    if checkpoint_method(spec.checkpoint) == "glesam":
        return "glesam"
    return "robust" if spec.robust else "sam"


def write_run(out: Path, models: Sequence[ModelSpec], plan: EvalPlan, results: Results, settings: EvalSettings,
              split: str = "custom", data: Optional[str] = None, skipped: Sequence[dict[str, str]] = ()) -> EvalRun:
    """Builds the tables of `results` and writes the run's document under `out`: prompts.json (to
    rerun with the same prompts), results.json (settings and every table), results.md, and with
    matplotlib one bar chart of IoU per table under charts/. `split`, `data` and `skipped` (datasets
    left out, with the reason) are recorded in results.json."""
    with_ap = settings.prompt_type == "box"
    metrics = table_metrics(with_ap)
    tables = build_tables(results, plan.datasets, with_ap)
    names = [spec.name for spec in models]
    info: dict[str, Any] = {
        "split": split,
        "data": data,
        "prompt": settings.prompt_type,
        "seed": plan.prompts.seed,
        "num_points": plan.prompts.num_points,
        "limit": settings.limit,
        "models": [{"name": s.name, "checkpoint": str(s.checkpoint), "path": decoder_path(s)} for s in models],
        "metrics": list(metrics),
        "skipped": list(skipped),
    }
    plan.prompts.save(out / "prompts.json")
    write_json(out / "results.json", results_document(tables, info))
    write_text(out / "results.md", markdown(tables, names, metrics))
    run = EvalRun(tables, metrics, [out / "results.json", out / "results.md", out / "prompts.json"])
    try:
        run.charts = write_charts(tables, names, CHART_METRIC, out / "charts")
    except ImportError:
        run.charts_skipped = "matplotlib is not installed (pip install 'robustsam[plot]')"
    return run


def evaluate(
    models: list[ModelSpec],
    plan: EvalPlan,
    out: Path,
    settings: EvalSettings,
    on_image: Callable[[str], None] = lambda model: None,
    on_note: Callable[[str], None] = lambda note: None,
    on_failure: OnFailure = None,
    split: str = "custom",
    data: Optional[str] = None,
    skipped: Sequence[dict[str, str]] = (),
) -> EvalRun:
    """Scores every model on the plan's images (cached in OUT/cache, so a rerun resumes) and writes
    the run's document (`write_run`). Callbacks as in `score_items`."""
    results = score_items(models, plan, out / CACHE_DIR, settings, on_image, on_note, on_failure)
    return write_run(out, models, plan, results, settings, split, data, skipped)

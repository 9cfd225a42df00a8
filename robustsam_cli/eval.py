"""`robustsam eval`: the paper's evaluation protocol, several models side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from core.data.datasets import SPLITS, split_datasets
from core.io import require_output_dir
from core.device import resolve_device
from core.errors import InputError
from core.evaluation import (
    CACHE_DIR,
    METRIC_LABELS,
    NUM_POINTS,
    PROMPT_TYPES,
    EvalPlan,
    EvalRun,
    EvalSettings,
    ModelSpec,
    PromptBook,
    Table,
    collect_results,
    evaluate,
    last_condition,
    require_checkpoints,
    row_cells,
    score_items,
    write_run,
)
from core.inference.batching import ImageBatch
from core.evaluation.shards import EvalLaunch, EvalPartSummary, eval_worker, plan_part
from core.parallel import STATE_DIR, mark_done
from core.tiling import check_tiling

from .eval_video import eval_video
from .options import device_option, image_batch_option, image_progress, precision_option, resolve_image_batch
from .parallel import Parallel, launch, parallel_options, pop_parallel

from .outcome import FailedImages, allow_empty_option, report_empty, report_failures



def rich_table(table: Table, models: list[str], metric: str) -> RichTable:
    """A console table of one metric, one column per model (the full tables are too wide for a
    terminal); summary rows are set apart by a rule and bold."""
    rich = RichTable(title=f"{table.dataset}: {METRIC_LABELS[metric]}")
    for index, name in enumerate(["Condition", "Images", "Objects", *models]):
        rich.add_column(name, justify="left" if index == 0 else "right")
    last = last_condition(table)
    for row in table.rows:
        rich.add_row(*row_cells(row, models, (metric,)), style=None if row.kind == "condition" else "bold", end_section=row is last)
    return rich


@click.command("eval")
@click.option("--split", type=click.Choice([*SPLITS, "custom"]), default="custom", show_default=True,
              help="Published test split, or 'custom': --data is one Robust-Seg split folder or manifest JSON.")
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="Data root (or the custom dataset).")
@click.option("--data-config", type=click.Path(path_type=Path), help="JSON {dataset: location} overriding where datasets lie under --data.")
@click.option("--model", "models", multiple=True, default=("robustsam=default", "sam=default:sam"), show_default=True,
              metavar="NAME=CKPT[:sam]",
              help="A model to evaluate (repeatable); ':sam' evaluates SAM's decoder path; CKPT 'default' is the built-in model.")
@click.option("--prompt", "prompt_type", type=click.Choice(PROMPT_TYPES), default="points", show_default=True,
              help="3 positive points from each ground-truth mask, or its box (adds COCO mask AP).")
@click.option("--prompts-file", type=click.Path(path_type=Path), help="Reuse the prompts of an earlier run (its prompts.json).")
@click.option("--seed", type=int, default=0, show_default=True, help="Prompt sampling seed (ignored with --prompts-file).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N images of each dataset and condition.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("robustsam-eval"), show_default=True,
              help="Folder for results.json, results.md, prompts.json, charts and the resume cache.")
@click.option("--video", "video", is_flag=True,
              help="--data holds videos (DAVIS's JPEGImages/480p + Annotations/480p, or `degrade`'s video output): "
                   "SAM 2 tracks each from its first annotation; J, F and J&F per condition. --model NAME=SAM2_CHECKPOINT.")
@click.option("--video-prompt", type=click.Choice(("mask", "box")), default="mask", show_default=True,
              help="[--video] The first frame's prompt per object: its annotated mask, or that mask's box.")
@device_option()
@precision_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Prompts decoded at once (full-size masks for each).")
@image_batch_option()
@click.option("--tile", type=int, help="Segment each image in SIZE x SIZE tiles at full resolution (as segment --tile); scored against the full-size masks.")
@click.option("--tile-overlap", type=int, default=128, show_default=True, help="[--tile] Pixels neighbouring tiles share.")
@click.option("--fresh", is_flag=True, help="Ignore cached results and evaluate everything again.")
@allow_empty_option
@parallel_options
def eval_command(
    split: str,
    data: Path,
    data_config: Optional[Path],
    models: tuple[str, ...],
    prompt_type: str,
    prompts_file: Optional[Path],
    seed: int,
    limit: Optional[int],
    out: Path,
    video: bool,
    video_prompt: str,
    device: str,
    precision: str,
    batch_size: int,
    image_batch: Optional[ImageBatch],
    tile: Optional[int],
    tile_overlap: int,
    fresh: bool,
    allow_empty: bool,
    **parallel_params: Any,
) -> None:
    """Evaluate models on degraded and clear images: IoU, Dice, pixel accuracy, boundary IoU
    (and COCO mask AP with --prompt box), one row per degradation, then Degrade / Clear / Average.

    \b
    Example:
      robustsam eval --split zeroshot --data robustseg \\
        --model robustsam=robustsam_checkpoint_b.pth --model sam=sam_vit_b_01ec64.pth
    """
    console = Console(soft_wrap=True)  # long paths in notes stay on one line
    require_output_dir(out)
    parallel = pop_parallel(parallel_params)
    if video:
        named = click.get_current_context().get_parameter_source("models") != ParameterSource.DEFAULT
        checkpoints = {spec.name: spec.checkpoint for spec in map(ModelSpec.parse, models)} if named else {}
        eval_video(data, checkpoints, video_prompt, out, resolve_device(device))
        return
    specs = [ModelSpec.parse(text) for text in models]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise InputError(f"--model: model names must differ, got {', '.join(names)}")
    prompts = PromptBook.load(prompts_file) if prompts_file is not None else PromptBook(seed, NUM_POINTS)

    datasets, skipped = [], []
    for dataset in split_datasets(split, data, data_config):
        reason = dataset.missing()
        if reason is None:
            datasets.append(dataset)
        else:
            skipped.append({"dataset": dataset.name, "reason": reason})
    if not datasets:
        raise InputError(f"{data}: none of the datasets of split {split} was found ({', '.join(s['dataset'] for s in skipped)})")
    for entry in skipped:
        console.print(f"[yellow]{escape(entry['dataset'])}: skipped ({escape(entry['reason'])})[/yellow]")

    if tile is not None:
        check_tiling(tile, tile_overlap)
    image_batch = resolve_image_batch(image_batch, resolve_device(device))
    settings = EvalSettings(prompt_type, limit, device, precision, batch_size, fresh, image_batch, tile, tile_overlap)
    failed = FailedImages(Console(stderr=True, soft_wrap=True))
    plan = EvalPlan(datasets, prompts, limit, failed)  # draws every image's prompts, before any split
    if not plan.items and not plan.failures:
        report_empty(f"{data}: no images to evaluate", allow_empty)
        return
    recorded = dict(split=split, data=str(data), skipped=skipped)
    if parallel.launched:
        run = _launch(console, parallel, specs, plan, out, settings, failed, recorded)
    else:
        run = _evaluate(console, parallel, specs, plan, out, settings, failed, recorded)
    if run is not None:
        for table in run.tables:
            for metric in run.metrics:
                console.print(rich_table(table, names, metric))
        console.print(f"Wrote {', '.join(map(str, run.files[:-1]))} and {run.files[-1]}")
        if run.charts_skipped is None:
            console.print(f"Wrote {len(run.charts)} bar charts to {out / 'charts'}")
        else:
            console.print(f"Bar charts skipped: {run.charts_skipped}.", markup=False)
    report_failures(click.get_current_context(), failed.messages, len(plan.items) + plan.failures)


def _evaluate(console: Console, parallel: Parallel, specs: list[ModelSpec], plan: EvalPlan, out: Path,
              settings: EvalSettings, failed: FailedImages, recorded: dict[str, Any]) -> Optional[EvalRun]:
    """Evaluates here (all images, or those of --shard); the written run, or None for a shard that is
    not the last to finish."""
    items = plan_part(plan, parallel.shard)
    with image_progress(console) as progress:
        task = progress.add_task("evaluating", total=len(items) * len(specs))
        callbacks = dict(on_image=lambda model: progress.update(task, advance=1, description=model),
                         on_note=lambda note: progress.console.print(f"[yellow]{escape(note)}[/yellow]"), on_failure=failed)
        if parallel.shard is None:
            return evaluate(specs, plan, out, settings, **callbacks, **recorded)
        score_items(specs, plan, out / CACHE_DIR, settings, **callbacks, items=items, part=parallel.shard.name)
    if not mark_done(out, parallel.shard, EvalPartSummary(len(items))):
        console.print(f"Shard {parallel.shard.index}/{parallel.shard.count}: {len(items)} images evaluated; "
                      "the last shard to finish writes the results")
        return None
    return write_run(out, specs, plan, collect_results(specs, plan, out / CACHE_DIR, settings, failed), settings, **recorded)


def _launch(console: Console, parallel: Parallel, specs: list[ModelSpec], plan: EvalPlan, out: Path,
            settings: EvalSettings, failed: FailedImages, recorded: dict[str, Any]) -> Optional[EvalRun]:
    """Evaluates in torchrun workers, which take this process's prompts; node 0 writes the merged run."""
    require_checkpoints(specs)
    state = out / STATE_DIR / "launch"
    plan.prompts.save(state / "prompts.json")
    cuda = resolve_device(settings.device).type == "cuda"
    parts = launch("eval", eval_worker, EvalLaunch(specs, plan.datasets, state / "prompts.json", out, settings, cuda), state, parallel.nodes)
    for note in dict.fromkeys(note for part in parts for note in part.notes):
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if parallel.nodes.node_rank != 0:
        console.print(f"Node {parallel.nodes.node_rank}: done; node 0 writes the results")
        return None
    return write_run(out, specs, plan, collect_results(specs, plan, out / CACHE_DIR, settings, failed), settings, **recorded)

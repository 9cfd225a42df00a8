"""`robustsam eval --video`: the DAVIS protocol (J, F, J&F) per condition, one row per model."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from core.errors import InputError
from core.io import write_json, write_text
from core.video.evaluation import evaluate_videos
from core.video.tracking import load_video_predictor

from .defaults import console


def markdown_table(results: dict[str, dict[str, dict[str, float]]], metric: str) -> str:
    """One row per model, one column per condition, `metric` ("J", "F" or "J&F") in each cell."""
    conditions = list(next(iter(results.values())))
    lines = ["| model | " + " | ".join(conditions) + " |", "|---|" + "---:|" * len(conditions)]
    for model, by_condition in results.items():
        lines.append(f"| {model} | " + " | ".join(f"{by_condition[c][metric]:.3f}" for c in conditions) + " |")
    return "\n".join(lines)


def eval_video(data: Path, models: dict[str, Path], prompt_kind: str, out: Path, device: torch.device) -> None:
    """Tracks every sequence of `data` under every condition with each SAM 2 checkpoint of `models`
    (name -> checkpoint); prints J&F and writes OUT/video_results.json and OUT/video_results.md."""
    if not models:
        raise InputError("--video: name SAM 2 checkpoints with --model NAME=CHECKPOINT")
    err = console(stderr=True)
    results = {}
    for name, checkpoint in models.items():
        predictor = load_video_predictor(checkpoint, device=device)
        results[name] = evaluate_videos(predictor, data, prompt_kind,
                                        lambda condition, sequence: err.print(f"{name}: {condition}/{sequence}", markup=False))
    conditions = list(next(iter(results.values())))
    table = Table(title=f"DAVIS J&F ({prompt_kind} prompt on the first frame)")
    table.add_column("model")
    for condition in conditions:
        table.add_column(condition, justify="right")
    for name, by_condition in results.items():
        table.add_row(name, *(f"{by_condition[c]['J&F']:.3f}" for c in conditions))
    Console(soft_wrap=True).print(table)
    write_json(out / "video_results.json", {"data": str(data), "prompt": prompt_kind, "results": results})
    sections = [f"## {metric}\n\n{markdown_table(results, metric)}\n" for metric in ("J&F", "J", "F")]
    write_text(out / "video_results.md", f"# DAVIS protocol on {data} ({prompt_kind} prompt)\n\n" + "\n".join(sections))

"""`robustsam info CHECKPOINT`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from rich.table import Table

from core.deploy.weights import read_weights_metadata
from core.inference import summarize
from core.model import MODEL_TYPES
from core.model.default_model import is_default_name, read_amg_defaults

from .defaults import builtin_checkpoint, console as make_console


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--model-type", type=click.Choice(MODEL_TYPES), default=None, help="Check against this type instead of inferring it.")
def info(checkpoint: Path, model_type: Optional[str]) -> None:
    """Show a checkpoint's (.pth or .safetensors) model type, parameter counts, which modules it holds and the
    segment-everything settings it carries (CHECKPOINT `default`: the built-in model)."""
    if is_default_name(checkpoint):
        checkpoint = builtin_checkpoint()
    summary = summarize(checkpoint, model_type)
    console = make_console()
    console.print(f"[bold]{summary.path}[/bold]: {summary.model_type}, {summary.kind}")
    console.print(f"parameters: SAM {summary.sam_parameters:,}, robust {summary.robust_parameters:,}")
    metadata = read_weights_metadata(checkpoint)
    if metadata:
        shown = ", ".join(f"{key} {value}" for key, value in sorted(metadata.items()) if value)
        console.print(f"safetensors metadata: {shown}", markup=False)
    table = Table("module", "parameters", "present")
    for name, count in summary.modules.items():
        table.add_row(name, f"{count:,}", "yes")
    for name in summary.missing_modules:
        table.add_row(name, "-", "[red]no[/red]")
    console.print(table)
    amg = read_amg_defaults(checkpoint)
    if amg:
        shown = ", ".join(f"--{key.replace('_', '-')} {value:g}" for key, value in amg.items())
        console.print(f"segment-everything defaults (used when not given): {shown}", markup=False)
    else:
        console.print("segment-everything defaults: segment-anything's own (the checkpoint carries none)")

"""`robustsam info CHECKPOINT`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from core.model.checkpoint import summarize_checkpoint
from core.model.config import MODEL_CONFIGS


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--model-type", type=click.Choice(list(MODEL_CONFIGS)), default=None, help="Check against this type instead of inferring it.")
def info(checkpoint: Path, model_type: Optional[str]) -> None:
    """Show a checkpoint's model type, parameter counts and which modules it holds."""
    summary = summarize_checkpoint(checkpoint, model_type)
    console = Console()
    console.print(f"[bold]{summary.path}[/bold]: {summary.model_type}, {summary.kind}")
    console.print(f"parameters: SAM {summary.sam_parameters:,}, robust {summary.robust_parameters:,}")
    table = Table("module", "parameters", "present")
    for name, count in summary.modules.items():
        table.add_row(name, f"{count:,}", "yes")
    for name in summary.missing_modules:
        table.add_row(name, "-", "[red]no[/red]")
    console.print(table)

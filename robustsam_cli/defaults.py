"""Choosing the checkpoint when the user gives none."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from rich.console import Console

from core.model.default_model import DEFAULT_NOTICE, default_checkpoint


def checkpoint_or_default(checkpoint: Optional[Path]) -> Path:
    """`checkpoint`, or the built-in model, announced once on stderr."""
    if checkpoint is not None:
        return checkpoint
    default = default_checkpoint()
    if default is None:
        raise click.UsageError("this installation has no built-in model: pass --checkpoint PATH (a RobustSAM or SAM .pth file)")
    Console(stderr=True).print(f"[yellow]{DEFAULT_NOTICE}[/yellow]")
    return default

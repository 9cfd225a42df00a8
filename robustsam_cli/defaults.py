"""Choosing the checkpoint when the user gives none (or the name `default`), and consoles for logs."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import click
from click.core import ParameterSource
from rich.console import Console

from core.model.default_model import DEFAULT_NOTICE, default_checkpoint, is_default_name, read_amg_defaults

# Width for output that is not a terminal: long enough that log lines are never cut.
_LOG_WIDTH = 400


def console(stderr: bool = False) -> Console:
    """A rich Console; to a file or pipe it writes plain lines at full length (no wrapping, no '…')."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, soft_wrap=True, width=_LOG_WIDTH, no_color=True, highlight=False)


def builtin_checkpoint() -> Path:
    """The built-in model's file; a usage error in an installation without one."""
    default = default_checkpoint()
    if default is None:
        raise click.UsageError("this installation has no built-in model: pass --checkpoint PATH (a RobustSAM or SAM .pth file)")
    return default


def announce_builtin() -> None:
    """The one-line notice that the built-in model is in use, on stderr."""
    console(stderr=True).print(f"[yellow]{DEFAULT_NOTICE}[/yellow]")


def named_checkpoint(checkpoint: Optional[str | Path]) -> Optional[Path]:
    """`checkpoint` as a path, with the name `default` resolved to the built-in model (announced)."""
    if checkpoint is None:
        return None
    if is_default_name(checkpoint):
        announce_builtin()
        return builtin_checkpoint()
    return Path(checkpoint)


def checkpoint_or_default(checkpoint: Optional[str | Path]) -> Path:
    """`checkpoint` (`default` naming the built-in model), or the built-in model, announced once on stderr."""
    if checkpoint is None:
        announce_builtin()
        return builtin_checkpoint()
    return named_checkpoint(checkpoint)


def apply_amg_defaults(ctx: click.Context, checkpoint: Path, options: dict[str, Any]) -> dict[str, Any]:
    """`options` with the generator settings stored in `checkpoint` for every option the user left unset."""
    stored: Mapping[str, Any] = read_amg_defaults(checkpoint)
    given = {name for name in options if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    return {**options, **{key: value for key, value in stored.items() if key in options and key not in given}}


@contextmanager
def no_leftover_folder(folder: str | Path) -> Iterator[None]:
    """Removes `folder` again if the body fails after creating it and before writing anything into it."""
    folder = Path(folder)
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir() and not any(path.is_file() for path in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)
        raise

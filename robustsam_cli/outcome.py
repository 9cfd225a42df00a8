"""How every command ends a run over many images: an empty input, and images that failed.

Exit codes: 0 done; 1 some images failed (each reported on its own `Error:` line as it happened,
then one summary line), the others were written; 2 bad input refused before any work (one
`Error: <file>: <problem>` line), including an input with no images unless --allow-empty.
"""

from __future__ import annotations

from typing import Sequence

import click
from rich.console import Console

from core.errors import InputError

allow_empty_option = click.option(
    "--allow-empty", is_flag=True,
    help="An input with no images is a warning and exit 0 (by default it is an error, exit 2).",
)


def report_empty(message: str, allow_empty: bool) -> None:
    """An input without images: a warning with --allow-empty, else InputError (exit 2)."""
    if not allow_empty:
        raise InputError(f"{message}; pass --allow-empty to accept an empty input")
    click.echo(f"Warning: {message}", err=True)


def print_error(console: Console, message: str) -> None:
    """One `Error: <file>: <problem>` line as it is, never wrapped or read as markup."""
    console.print(f"Error: {message}", markup=False, highlight=False, soft_wrap=True)


class FailedImages:
    """The `on_failure` callback of a library run: prints each failed image's line once, as it
    happens, and keeps them for `report_failures`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        if message not in self.messages:  # e.g. one image read for each of several models
            self.messages.append(message)
            print_error(self.console, message)


def report_failures(ctx: click.Context, failures: Sequence[str], total: int) -> None:
    """Exit 1 with one summary line when any of the `total` images failed."""
    if failures:
        rest = "; the others were written" if len(failures) < total else ""
        click.echo(f"Failed: {len(failures)} of {total} images (each reported above){rest}", err=True)
        ctx.exit(1)

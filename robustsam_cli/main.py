"""The `robustsam` command group."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Iterator

import click

from core.errors import InputError, OutputError
from core.io import ImageNotice


class BadInput(click.ClickException):
    """One-line error for bad user input; exit code 2 like click's usage errors."""

    exit_code = 2


class RobustSamGroup(click.Group):
    """Turns `InputError` raised anywhere below a command into a one-line error with exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            with _notes_once():
                return super().invoke(ctx)
        except InputError as error:
            raise BadInput(str(error)) from None
        except OutputError as error:  # the run stopped at the first file it could not write
            raise click.ClickException(str(error)) from None
        except OSError as error:
            # A file the system refuses (a folder where a file must go, no permission, disk full):
            # one line naming it, not a traceback.
            if error.filename is None:
                raise
            raise BadInput(f"{error.filename}: {error.strerror or type(error).__name__}") from None


@contextmanager
def _notes_once() -> Iterator[None]:
    """Prints each ImageNotice (how images were read) once, as a `Note:` line on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("once", ImageNotice)
        shown = warnings.showwarning

        def show(message, category, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            if issubclass(category, ImageNotice):
                click.echo(f"Note: {message}", err=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def _version() -> str:
    try:
        return version("robustsam")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=RobustSamGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="robustsam")
def cli() -> None:
    """RobustSAM: Segment Anything robustly on degraded images.

    Every command takes --help. Checkpoints are local files you pass in; nothing is downloaded.
    """


# Commands import the model stack; registering them after `cli` exists keeps `main` importable by them.
from .degrade import degrade  # noqa: E402
from .eval import eval_command  # noqa: E402
from .info import info  # noqa: E402
from .prior import prior  # noqa: E402
from .restore import restore  # noqa: E402
from .segment import segment  # noqa: E402
from .serve import serve  # noqa: E402
from .export import export  # noqa: E402
from .train import train_command  # noqa: E402
from .track import track  # noqa: E402

for command in (segment, track, degrade, eval_command, prior, restore, info, train_command, export, serve):
    cli.add_command(command)

"""The `robustsam` command group."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click

from core.errors import InputError


class BadInput(click.ClickException):
    """One-line error for bad user input; exit code 2 like click's usage errors."""

    exit_code = 2


class RobustSamGroup(click.Group):
    """Turns `InputError` raised anywhere below a command into a one-line error with exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InputError as error:
            raise BadInput(str(error)) from None
        except OSError as error:
            # A file the system refuses (a folder where a file must go, no permission, disk full):
            # one line naming it, not a traceback.
            if error.filename is None:
                raise
            raise BadInput(f"{error.filename}: {error.strerror or type(error).__name__}") from None


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
from .export import export  # noqa: E402
from .train import train_command  # noqa: E402
from .track import track  # noqa: E402

for command in (segment, track, degrade, eval_command, prior, restore, info, train_command, export):
    cli.add_command(command)

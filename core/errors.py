"""Errors that describe bad user input; the CLI turns them into one line and exit code 2."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional


class InputError(ValueError):
    """A file or value given by the user is unusable. The message names it and the problem."""


class CheckpointError(InputError):
    """A checkpoint file is unreadable or does not fit the model."""


OnFailure = Optional[Callable[[str], None]]


@contextmanager
def per_image(on_failure: OnFailure) -> Iterator[None]:
    """The rule of every run over many images: an InputError in the body (an unreadable image, a
    mask of the wrong size) goes to `on_failure` with its message and the run goes on; without
    `on_failure` it is raised."""
    try:
        yield
    except InputError as error:
        if on_failure is None:
            raise
        on_failure(str(error))

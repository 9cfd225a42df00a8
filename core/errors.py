"""Errors the CLI turns into one line: bad user input (exit code 2) and an output that cannot be
written (exit code 1)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional


class InputError(ValueError):
    """A file or value given by the user is unusable. The message names it and the problem."""


class CheckpointError(InputError):
    """A checkpoint file is unreadable or does not fit the model."""


class OutputError(OSError):
    """A file could not be written (disk full, no permission, read-only file system). A run stops at
    the first: every later file would fail too. The message names the file and the cause."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause) or type(cause).__name__, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})"


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

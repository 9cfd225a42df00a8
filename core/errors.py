"""Errors that describe bad user input; the CLI turns them into one line and exit code 2."""


class InputError(ValueError):
    """A file or value given by the user is unusable. The message names it and the problem."""


class CheckpointError(InputError):
    """A checkpoint file is unreadable or does not fit the model."""

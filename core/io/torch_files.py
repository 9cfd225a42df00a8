"""Reading `torch.save` files safely: weights only (no pickle that runs code), errors in a few words."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

# Lines of torch's weights-only error that are advice, not the problem; one suggests
# weights_only=False, the unsafe setting, which this tool never passes nor recommends.
_ADVICE = ("weights only load failed", "weights_only", "please file an issue", "check the documentation", "torch.load")


def _load_problem(error: Exception) -> str:
    """What torch's error says is wrong with the file, in a few words, without its advice."""
    if isinstance(error, pickle.UnpicklingError):
        lines = [line.strip() for line in str(error).splitlines()]
        facts = [line for line in lines if line and not any(word in line.lower() for word in _ADVICE)]
        return f"refused to unpickle: {facts[0]}" if facts else "refused to unpickle it"
    if isinstance(error, EOFError) or not str(error).strip():
        return "empty or cut short" if isinstance(error, EOFError) else type(error).__name__
    if isinstance(error, (IndexError, KeyError, TypeError, AttributeError)):
        return "not a pickle or zip archive torch wrote"  # what the unpickler raises on other bytes, e.g. text
    first = str(error).strip().splitlines()[0]
    return first.split(". ")[0].rstrip(".")



def load_torch_file(path: str | os.PathLike, what: str = "checkpoint file", kind: str = "PyTorch checkpoint",
                    mmap: bool = False) -> Any:
    """The content of a `torch.save` file read with `weights_only=True` (plain containers and
    tensors only: a pickle that would run code is refused). CheckpointError naming the file, "no
    such `what`" when it is missing, "not a `kind`" for any file torch cannot read that way:
    empty, cut short, text, random bytes or a malicious pickle. `mmap`: tensors stay on disk until
    used (zip-format files only; a legacy-format file is then refused)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise next to the error
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch's unpickler raises many types for foreign bytes
        raise CheckpointError(f"{path}: not a {kind} ({_load_problem(error)})") from None

"""Writing files whole or not at all, checking output locations, and reading JSON inputs."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError


def require_output_dir(path: str | os.PathLike) -> Path:
    """`path` if it is a folder or can be made one (nothing is created); InputError when it, or a
    folder above it, is a file."""
    path = Path(path)
    _require_folders(path, (path, *path.parents))
    return path


def require_output_file(path: str | os.PathLike) -> Path:
    """`path` if a file can be written there (nothing is created); InputError when it is a folder
    or a folder above it is a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an output file")
    _require_folders(path, path.parents)
    return path


def _require_folders(path: Path, candidates: Sequence[Path]) -> None:
    for candidate in candidates:
        if candidate.exists():
            if not candidate.is_dir():
                what = "the output folder" if candidate == path else f"a folder above {path}"
                raise InputError(f"{candidate}: is a file, not {what}")
            break


def read_json(path: str | os.PathLike, what: str) -> Any:
    """A JSON file's content; InputError naming the file and calling it `what` (e.g. "manifest
    file") when it is missing, unreadable or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a JSON {what} ({error})".splitlines()[0]) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

    The temporary name keeps the suffix so writers that pick a format from it work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()




def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, document: Any) -> None:
    """Writes `document` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(document, indent=2) + "\n")

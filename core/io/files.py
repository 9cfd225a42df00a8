"""Writing files whole or not at all, checking output locations, and reading JSON inputs."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError, OutputError


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
        return json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a Windows byte-order mark is fine
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a JSON {what} ({error})".splitlines()[0]) from None


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, on import, before any thread writes files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The permissions an ordinary open(path, "w") gives a new file: 0o666 less the process's umask.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds, so
    `path` is never left half-written and no temporary file stays behind.

    The temporary name keeps the suffix so writers that pick a format from it work. The file gets
    the mode an ordinary `open(path, "w")` would (umask applied), not mkstemp's 0600. An OSError
    while writing (disk full, no permission, read-only file system) becomes OutputError naming `path`.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        tmp_path = Path(tmp)
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as error:
        raise OutputError(path, error) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, document: Any) -> None:
    """Writes `document` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(document, indent=2) + "\n")

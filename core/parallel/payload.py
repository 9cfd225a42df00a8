"""Typed job payloads and run summaries between processes: dataclasses to JSON and back, and `merge`,
which turns the summaries of several workers into one.

A summary field merges by its type: numbers add, lists join, dicts merge key by key; a field
declared with `metadata=SLOWEST` takes the largest value (wall time: the slowest worker's), one
with `metadata=SAME` takes the first worker's (what every worker computes alike).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

T = TypeVar("T")

SLOWEST = {"merge": "max"}
SAME = {"merge": "same"}


def to_json(value: Any) -> Any:
    """`value` as plain JSON data: dataclasses as dicts of their fields, paths as strings, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value


def from_json(kind: Any, data: Any) -> Any:
    """The `kind` (a dataclass, Path, list[...], dict[str, ...], tuple[...], Optional[...] or a plain
    type) that `to_json` turned into `data`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if data is None:
        return None
    if origin in (typing.Union, types.UnionType):
        return from_json(next(arg for arg in args if arg is not type(None)), data)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{field.name: from_json(hints[field.name], data[field.name])
                       for field in dataclasses.fields(kind) if field.name in data})
    if kind is Path:
        return Path(data)
    if origin in (list, Sequence):
        return [from_json(args[0], item) for item in data] if args else list(data)
    if origin is tuple:
        kinds = [args[0]] * len(data) if len(args) == 2 and args[1] is Ellipsis else list(args)
        return tuple(from_json(item_kind, item) for item_kind, item in zip(kinds, data))
    if origin is dict:
        return {key: from_json(args[1], item) for key, item in data.items()} if args else dict(data)
    return data


def merge(parts: Sequence[T]) -> T:
    """One summary of the same dataclass as `parts`, merging field by field (see the module's doc)."""
    first = parts[0]
    merged = {}
    for field in dataclasses.fields(first):  # type: ignore[arg-type]
        values = [getattr(part, field.name) for part in parts]
        merged[field.name] = _merge_values(values, field.metadata.get("merge"))
    return dataclasses.replace(first, **merged)  # type: ignore[type-var]


def _merge_values(values: list[Any], rule: Any) -> Any:
    if rule == "same":
        return values[0]
    if rule == "max":
        if isinstance(values[0], dict):
            return {key: max(value.get(key, 0) for value in values) for key in _keys(values)}
        return max(values)
    if isinstance(values[0], dict):
        return {key: sum(value.get(key, 0) for value in values) for key in _keys(values)}
    if isinstance(values[0], list):
        return [item for value in values for item in value]
    return sum(values)


def _keys(values: list[dict]) -> list[Any]:
    return list(dict.fromkeys(key for value in values for key in value))

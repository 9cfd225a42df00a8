"""Prompts as published for evaluation: 3 positive points drawn from each ground-truth mask, or its box.

Sampling is seeded per image name, so the prompts of an image do not depend on which other images,
models or degradations a run includes. A `PromptBook` records every prompt used and is written to a
JSON file that a later run reads back (`--prompts-file`), making runs repeatable and comparable
across machines and library versions.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from ..io import atomic_path, read_json

NUM_POINTS = 3
PROMPT_TYPES = ("points", "box")
_FORMAT = "robustsam-prompts"
_VERSION = 1


@dataclass
class ObjectPrompt:
    """Prompts for one object, in pixel coordinates of the original image.

    points: (P, 2) int xy of positive points; box: (4,) int x0, y0, x1, y1 (inclusive extremes).
    """

    points: np.ndarray
    box: np.ndarray

    def to_json(self) -> dict[str, list]:
        return {"points": self.points.tolist(), "box": self.box.tolist()}


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator for image `name`: a pure function of the seed and the name."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, digest]))


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(4,) int64 x0, y0, x1, y1 bounding the True pixels of an (H, W) mask (SAM's convention)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.int64)


def sample_points(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) int64 xy of distinct pixels drawn uniformly from an (H, W) mask; with repeats only
    when the mask has fewer pixels than `count`."""
    pixels = np.flatnonzero(mask)
    chosen = rng.choice(pixels, size=count, replace=len(pixels) < count)
    rows, cols = np.unravel_index(chosen, mask.shape)
    return np.stack([cols, rows], axis=1).astype(np.int64)


def sample_prompts(masks: np.ndarray, name: str, seed: int, num_points: int = NUM_POINTS) -> list[Optional[ObjectPrompt]]:
    """Prompts for each of the (M, H, W) masks of image `name`; None for an empty mask."""
    rng = image_rng(seed, name)
    return [
        ObjectPrompt(sample_points(mask, num_points, rng), mask_box(mask)) if mask.any() else None for mask in masks
    ]


def _parse_object(value: Any, where: str) -> Optional[ObjectPrompt]:
    if value is None:
        return None
    try:
        points = np.asarray(value["points"], dtype=np.int64)
        box = np.asarray(value["box"], dtype=np.int64)
    except (TypeError, KeyError, ValueError):
        raise InputError(f"{where}: an object needs integer 'points' [[x, y], ...] and 'box' [x0, y0, x1, y1]") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0 or box.shape != (4,):
        raise InputError(f"{where}: points must be [[x, y], ...] and box [x0, y0, x1, y1]")
    return ObjectPrompt(points, box)


class PromptBook:
    """The prompts of a run, by dataset and image name; sampled on first use unless read from a file."""

    def __init__(self, seed: int = 0, num_points: int = NUM_POINTS) -> None:
        if num_points < 1:
            raise InputError(f"num_points: must be at least 1, got {num_points}")
        self.seed = seed
        self.num_points = num_points
        self.entries: dict[str, dict[str, list[Optional[ObjectPrompt]]]] = {}
        self.source: Optional[Path] = None

    def prompts_for(self, dataset: str, name: str, masks: np.ndarray) -> list[Optional[ObjectPrompt]]:
        """The prompts for the (M, H, W) masks of image `name`: recorded ones, else freshly sampled."""
        images = self.entries.setdefault(dataset, {})
        if name not in images:
            images[name] = sample_prompts(masks, name, self.seed, self.num_points)
        prompts = images[name]
        where = self.source or "prompts"
        if len(prompts) != len(masks):
            raise InputError(f"{where}: {dataset}/{name} has prompts for {len(prompts)} objects, the image has {len(masks)}")
        height, width = masks.shape[1:]
        for prompt in prompts:
            if prompt is None:
                continue
            xs = np.concatenate([prompt.points[:, 0], prompt.box[0::2]])
            ys = np.concatenate([prompt.points[:, 1], prompt.box[1::2]])
            if xs.min() < 0 or ys.min() < 0 or xs.max() >= width or ys.max() >= height:
                raise InputError(f"{where}: {dataset}/{name} has a prompt outside its {width}x{height} image")
        return prompts

    def to_json(self) -> dict[str, Any]:
        """The JSON document `load` reads back."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "seed": self.seed,
            "num_points": self.num_points,
            "datasets": {
                dataset: {name: [p.to_json() if p is not None else None for p in prompts] for name, prompts in images.items()}
                for dataset, images in self.entries.items()
            },
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the book atomically as JSON."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PromptBook":
        """Reads a prompts JSON written by `save`; images it lacks are sampled with its seed."""
        path = Path(path)
        document = read_json(path, "prompts file")
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise InputError(f"{path}: not a robustsam prompts file (format must be {_FORMAT!r})")
        if document.get("version") != _VERSION:
            raise InputError(f"{path}: unsupported prompts file version {document.get('version')!r}")
        seed, num_points, datasets = document.get("seed"), document.get("num_points"), document.get("datasets")
        if not isinstance(seed, int) or not isinstance(num_points, int) or not isinstance(datasets, dict):
            raise InputError(f"{path}: needs an integer 'seed' and 'num_points' and a 'datasets' object")
        book = cls(seed, num_points)
        book.source = path
        for dataset, images in datasets.items():
            if not isinstance(images, dict):
                raise InputError(f"{path}: dataset {dataset!r} must map image names to object lists")
            for name, objects in images.items():
                if not isinstance(objects, list):
                    raise InputError(f"{path}: {dataset}/{name} must be a list of objects")
                where = f"{path}: {dataset}/{name}"
                book.entries.setdefault(dataset, {})[name] = [_parse_object(value, where) for value in objects]
        return book

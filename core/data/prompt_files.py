"""Prompt files: the tool's own JSON and COCO instances, read into validated prompts per image.

The tool's JSON maps image paths (relative to the input folder) to lists of prompts:

    {"street.jpg": [{"box": [x0, y0, x1, y1]},
                    {"points": [[x, y], ...], "labels": [1, 0, ...]},
                    {"box": [...], "points": [...], "labels": [...]}]}

A COCO instances file (with "images" and "annotations") gives one prompt per annotation, from
its box or from one interior point of its mask.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from ..errors import InputError

PROMPT_FIELDS = ("box", "points", "labels")
PROMPT_SOURCES = ("box", "point")


@dataclass(frozen=True)
class Prompt:
    """One prompt in image pixel coordinates: a box (x0, y0, x1, y1) and/or points with labels
    (1 = foreground, 0 = background). `where` names it in messages ("file: image 'a.jpg', prompt 2")."""

    box: Optional[tuple[float, float, float, float]] = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    where: str = ""
    category_id: int = 1

    @property
    def signature(self) -> tuple[bool, int]:
        """Prompts with equal signatures can be decoded in one batch without padding."""
        return self.box is not None, len(self.points)

    def check_inside(self, width: int, height: int) -> None:
        """Raises InputError when the box or a point lies outside a width x height image."""
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise InputError(f"{self.where}, field 'box': {list(self.box)} is outside the {width}x{height} image")
        for index, (x, y) in enumerate(self.points):
            if not (0 <= x <= width and 0 <= y <= height):
                raise InputError(
                    f"{self.where}, field 'points' [{index}]: ({x}, {y}) is outside the {width}x{height} image"
                )


@dataclass
class PromptSet:
    """Prompts by image key (a POSIX path relative to the input folder), in file order.

    `image_ids` holds COCO image ids when the prompts came from a COCO file; `names` each key as
    the file spelled it (e.g. with a leading '/'), for messages.
    """

    source: Path
    prompts: dict[str, list[Prompt]]
    image_ids: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def name(self, key: str) -> str:
        """The image of `key` as the prompt file wrote it."""
        return self.names.get(key, key)


def load_prompts(path: str | os.PathLike, prompt_from: str = "box") -> PromptSet:
    """Reads the tool's JSON or a COCO instances file; raises InputError naming file, image and field."""
    path = Path(path)
    if prompt_from not in PROMPT_SOURCES:
        raise ValueError(f"prompt_from must be one of {PROMPT_SOURCES}, not {prompt_from!r}")
    if not path.is_file():
        raise InputError(f"{path}: no such prompt file")
    repeated: list[str] = []
    try:
        # utf-8-sig: Windows editors start UTF-8 files with a byte-order mark.
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=lambda pairs: _unique_keys(pairs, repeated))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({str(error).splitlines()[0]})") from None
    if repeated:
        named = isinstance(data, dict) and repeated[0] in data and not is_coco_instances(data)
        raise InputError(f"{path}: image '{repeated[0]}' is listed twice" if named else f"{path}: key '{repeated[0]}' appears twice in one object")
    if is_coco_instances(data):
        return _coco_prompts(path, data, prompt_from)
    if prompt_from != "box":
        raise InputError(f"{path}: --prompt-from applies to COCO instances files only")
    return tool_prompts(path, data)


def _unique_keys(pairs: list[tuple[str, Any]], repeated: list[str]) -> dict[str, Any]:
    """A JSON object as a dict; keys it holds twice (json keeps the last silently) go to `repeated`."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            repeated.append(key)
        seen[key] = value
    return seen


def is_coco_instances(data: Any) -> bool:
    """True for a COCO instances file: an object with 'images' and 'annotations' lists."""
    return isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)


def tool_prompts(path: Path, data: Any) -> PromptSet:
    """The tool's JSON already parsed (`data`), validated as if read from `path`; InputError as `load_prompts`."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object mapping image paths to prompt lists, got {type(data).__name__}")
    prompts: dict[str, list[Prompt]] = {}
    names: dict[str, str] = {}
    for image, entries in data.items():
        key = normalise_key(image)
        names[key] = image
        if key in prompts:
            raise InputError(f"{path}: image '{image}' is listed twice")
        if not isinstance(entries, list):
            raise InputError(f"{path}: image '{image}': expected a list of prompts, got {type(entries).__name__}")
        prompts[key] = [parse_prompt(f"{path}: image '{image}', prompt {index}", entry) for index, entry in enumerate(entries)]
    return PromptSet(path, prompts, names=names)


def parse_prompt(where: str, entry: Any) -> Prompt:
    """One prompt object of the tool's JSON ('box' and/or 'points' + 'labels'); InputError starting with `where`."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object with 'box' and/or 'points'+'labels', got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(PROMPT_FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field '{unknown[0]}' (expected {', '.join(PROMPT_FIELDS)})")
    if "box" not in entry and "points" not in entry:
        raise InputError(f"{where}: needs a 'box' or 'points'")
    box = _box(where, entry["box"]) if "box" in entry else None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    if "points" in entry or "labels" in entry:
        if "points" not in entry or "labels" not in entry:
            raise InputError(f"{where}: 'points' and 'labels' go together")
        points, labels = _points(where, entry["points"]), _labels(where, entry["labels"])
        if len(points) != len(labels):
            raise InputError(f"{where}, field 'labels': {len(labels)} labels for {len(points)} points")
    return Prompt(box=box, points=points, labels=labels, where=where)


def prompt_entry(prompt: Prompt) -> dict[str, Any]:
    """One prompt as an entry of the tool's JSON, which `tool_prompts` reads back to an equal prompt."""
    entry: dict[str, Any] = {}
    if prompt.box is not None:
        entry["box"] = list(prompt.box)
    if prompt.points:
        entry["points"] = [list(point) for point in prompt.points]
        entry["labels"] = list(prompt.labels)
    return entry


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _box(where: str, value: Any) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4 or not all(_number(v) for v in value):
        raise InputError(f"{where}, field 'box': expected [x0, y0, x1, y1] (4 numbers), got {json.dumps(value)}")
    x0, y0, x1, y1 = (float(v) for v in value)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{where}, field 'box': {json.dumps(value)} needs x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def _points(where: str, value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}, field 'points': expected a non-empty list of [x, y], got {json.dumps(value)}")
    for index, point in enumerate(value):
        if not isinstance(point, list) or len(point) != 2 or not all(_number(v) for v in point):
            raise InputError(f"{where}, field 'points' [{index}]: expected [x, y], got {json.dumps(point)}")
    return tuple((float(x), float(y)) for x, y in value)


def _labels(where: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InputError(f"{where}, field 'labels': expected a list of 0/1, got {json.dumps(value)}")
    for index, label in enumerate(value):
        if isinstance(label, bool) or label not in (0, 1):
            raise InputError(f"{where}, field 'labels' [{index}]: expected 0 or 1, got {json.dumps(label)}")
    return tuple(int(label) for label in value)


def normalise_key(image: str) -> str:
    """An image path as written in a prompt file, as a POSIX path relative to the input folder."""
    return Path(image.replace("\\", "/")).as_posix().lstrip("/")


def _coco_prompts(path: Path, data: dict[str, Any], prompt_from: str) -> PromptSet:
    images: dict[int, dict[str, Any]] = {}
    prompts: dict[str, list[Prompt]] = {}
    image_ids: dict[str, int] = {}
    names: dict[str, str] = {}
    for index, image in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        if not isinstance(image, dict):
            raise InputError(f"{where}: expected an object")
        for name, kind in (("id", int), ("file_name", str)):
            if not isinstance(image.get(name), kind) or isinstance(image.get(name), bool):
                raise InputError(f"{where}, field '{name}': expected {kind.__name__}, got {json.dumps(image.get(name))}")
        key = normalise_key(image["file_name"])
        if image["id"] in images:
            raise InputError(f"{where}, field 'id': duplicate image id {image['id']}")
        if key in prompts:
            raise InputError(f"{where}, field 'file_name': image '{image['file_name']}' is listed twice")
        images[image["id"]] = image
        prompts[key] = []
        image_ids[key] = image["id"]
        names[key] = image["file_name"]
    annotation_ids: set[Any] = set()
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict):
            raise InputError(f"{path}: annotations[{index}]: expected an object")
        if isinstance(annotation.get("id"), (int, str)):
            if annotation["id"] in annotation_ids:
                raise InputError(f"{path}: annotations[{index}], field 'id': duplicate annotation id {json.dumps(annotation['id'])}")
            annotation_ids.add(annotation["id"])
        image = images.get(annotation.get("image_id"))  # type: ignore[arg-type]
        if image is None:
            raise InputError(f"{path}: annotations[{index}], field 'image_id': no image with id {json.dumps(annotation.get('image_id'))}")
        where = f"{path}: image '{image['file_name']}', annotations[{index}]"
        prompts[normalise_key(image["file_name"])].append(_coco_prompt(where, annotation, image, prompt_from))
    return PromptSet(path, prompts, image_ids, names)


def _coco_prompt(where: str, annotation: dict[str, Any], image: dict[str, Any], prompt_from: str) -> Prompt:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0:
        raise InputError(f"{where}, field 'bbox': expected [x, y, width, height] with positive size, got {json.dumps(bbox)}")
    category = annotation.get("category_id", 1)
    if not isinstance(category, int) or isinstance(category, bool):
        raise InputError(f"{where}, field 'category_id': expected an integer, got {json.dumps(category)}")
    x, y, w, h = (float(v) for v in bbox)
    if prompt_from == "box":
        return Prompt(box=(x, y, x + w, y + h), where=where, category_id=category)
    point = (x + w / 2, y + h / 2)
    if annotation.get("segmentation"):
        mask = _coco_mask(where, annotation["segmentation"], image)
        if mask.any():
            point = interior_point(mask)
    return Prompt(points=(point,), labels=(1,), where=where, category_id=category)


def _coco_mask(where: str, segmentation: Any, image: dict[str, Any]) -> np.ndarray:
    height, width = image.get("height"), image.get("width")
    if not isinstance(height, int) or not isinstance(width, int) or height <= 0 or width <= 0:
        raise InputError(f"{where}: the image needs positive integer 'height' and 'width' to read its mask")
    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = dict(segmentation, counts=segmentation["counts"].encode("ascii"))
        return mask_utils.decode(rle).astype(bool)
    except Exception as error:  # pycocotools raises assorted types on malformed input
        raise InputError(f"{where}, field 'segmentation': unreadable ({type(error).__name__}: {error})".splitlines()[0]) from None


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """The pixel centre (x, y) deepest inside a non-empty (H, W) bool mask (chessboard distance to
    the background), the one nearest the centroid of the deepest pixels on ties; deterministic."""
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    crop = torch.from_numpy(mask[y0 : ys.max() + 1, x0 : xs.max() + 1].astype(np.float32))[None, None]
    # Zero padding makes the image border count as background for the erosion.
    deepest = F.pad(crop, (1, 1, 1, 1))
    while True:
        eroded = -F.max_pool2d(-deepest, kernel_size=3, stride=1, padding=1)
        if not eroded.any():
            break
        deepest = eroded
    yy, xx = np.nonzero(deepest[0, 0].numpy())
    nearest = int(np.argmin((yy - yy.mean()) ** 2 + (xx - xx.mean()) ** 2))
    return float(x0 + xx[nearest] - 1) + 0.5, float(y0 + yy[nearest] - 1) + 0.5

"""Video prompt files: prompts keyed by video, each on a frame for an object id.

    {"clip.mp4": [{"frame": 0, "obj_id": 1, "box": [x0, y0, x1, y1]},
                  {"frame": 40, "obj_id": 1, "points": [[x, y]], "labels": [1]},
                  {"frame": 0, "obj_id": 2, "mask": "masks/car.png"}],
     "bear": [{"frame": 0, "obj_id": 1, "mask": {"size": [h, w], "counts": "..."}}]}

A video is keyed by its file name, a frame folder by the folder's name. A prompt is a box and/or
points with labels (as in the image prompt files) or a mask: a PNG path relative to the prompt file
(non-zero pixels inside) or a COCO RLE. Several prompts may name one object (corrections on later
frames); several objects may share a frame.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pycocotools import mask as mask_utils

from ..io import read_json, read_pixels
from ..data.prompt_files import PROMPT_FIELDS, Prompt, parse_prompt
from ..errors import InputError
from .sources import FrameSource

VIDEO_PROMPT_FIELDS = ("frame", "obj_id", "mask") + PROMPT_FIELDS


@dataclass(frozen=True, eq=False)
class VideoPrompt:
    """A prompt for object `obj_id` on frame `frame`: `prompt` (box and/or points) or `mask`
    ((H, W) bool), or both; `where` names it in messages."""

    frame: int
    obj_id: int
    prompt: Optional[Prompt] = None
    mask: Optional[np.ndarray] = field(default=None, repr=False)
    where: str = ""


@dataclass
class VideoPromptSet:
    """Prompts by video name, in file order."""

    source: Path
    prompts: dict[str, list[VideoPrompt]]

    def for_video(self, video: FrameSource) -> list[VideoPrompt]:
        """The prompts of `video`, checked against it: frames within the video, boxes and points
        inside its frames, masks of its size. InputError when the file names no prompt for it."""
        if video.name not in self.prompts:
            raise InputError(f"{self.source}: no prompts for '{video.name}' (keys are video file or frame folder names)")
        height, width = video.info.size
        for prompt in self.prompts[video.name]:
            if prompt.frame >= len(video):
                raise InputError(f"{prompt.where}, field 'frame': frame {prompt.frame} is past the end ({len(video)} frames)")
            if prompt.prompt is not None:
                prompt.prompt.check_inside(width, height)
            if prompt.mask is not None and prompt.mask.shape != (height, width):
                raise InputError(
                    f"{prompt.where}, field 'mask': {prompt.mask.shape[1]}x{prompt.mask.shape[0]}, the video is {width}x{height}"
                )
        return self.prompts[video.name]


def load_video_prompts(path: str | os.PathLike) -> VideoPromptSet:
    """Reads a video prompt file; InputError naming the file, video, prompt and field."""
    path = Path(path)
    data = read_json(path, "prompt file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object mapping video names to prompt lists, got {type(data).__name__}")
    prompts: dict[str, list[VideoPrompt]] = {}
    for video, entries in data.items():
        if not isinstance(entries, list) or not entries:
            raise InputError(f"{path}: video '{video}': expected a non-empty list of prompts")
        prompts[video] = [_video_prompt(path, f"{path}: video '{video}', prompt {i}", entry) for i, entry in enumerate(entries)]
    return VideoPromptSet(path, prompts)


def _video_prompt(path: Path, where: str, entry: Any) -> VideoPrompt:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object with 'frame', 'obj_id' and a box, points or mask")
    unknown = sorted(set(entry) - set(VIDEO_PROMPT_FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field '{unknown[0]}' (expected {', '.join(VIDEO_PROMPT_FIELDS)})")
    for name in ("frame", "obj_id"):
        value = entry.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{where}, field '{name}': expected a non-negative integer, got {json.dumps(value)}")
    obj_id = entry["obj_id"]
    geometry = {key: entry[key] for key in PROMPT_FIELDS if key in entry}
    if not geometry and "mask" not in entry:
        raise InputError(f"{where}: object {obj_id} has no prompt (give a 'box', 'points' + 'labels' or a 'mask')")
    prompt = parse_prompt(where, geometry) if geometry else None
    mask = _mask(path, where, entry["mask"]) if "mask" in entry else None
    return VideoPrompt(entry["frame"], obj_id, prompt, mask, where)


def _mask(path: Path, where: str, value: Any) -> np.ndarray:
    """A mask given as a PNG path (relative to the prompt file) or a COCO RLE, as (H, W) bool."""
    if isinstance(value, str):
        pixels = read_pixels(path.parent / value, what="mask")
        mask = (pixels if pixels.ndim == 2 else pixels[..., 0]) > 0
    elif isinstance(value, dict) and isinstance(value.get("counts"), str) and isinstance(value.get("size"), list):
        try:
            mask = mask_utils.decode({"size": value["size"], "counts": value["counts"].encode("ascii")}).astype(bool)
        except Exception as error:  # pycocotools raises assorted types on malformed input
            raise InputError(f"{where}, field 'mask': unreadable RLE ({type(error).__name__})") from None
    else:
        raise InputError(f"{where}, field 'mask': expected a PNG path or a COCO RLE {{'size', 'counts'}}")
    if not mask.any():
        raise InputError(f"{where}, field 'mask': the mask is empty")
    return mask

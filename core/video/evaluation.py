"""The DAVIS protocol over conditions: SAM 2 tracks each sequence from its first-frame annotation
(the mask, or its box) on the clear and on each degraded copy of the frames, and J, F and J&F are
scored against the annotations (`metrics.SequenceScores`: first and last frame left out).

Layouts read (`video_conditions`):
* DAVIS: DATA/JPEGImages/480p/<seq>/ and DATA/Annotations/480p/<seq>/ (one condition, clear);
* `robustsam degrade` on videos: DATA/masks/<seq>/ and DATA/<condition>/<seq>/ for clear and each type.
Annotations are label images (palette or 16-bit): 0 background, 255 void, other values object ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.prompt_files import Prompt
from ..degradations.run import MASKS
from ..errors import InputError
from ..io import read_pixels
from .metrics import VOID_LABEL, SequenceScores, pooled_means
from .prompts import VideoPrompt
from .sources import FrameFolder, numbered_frames
from .tracking import track

PROMPT_KINDS = ("mask", "box")
DAVIS_FRAMES = Path("JPEGImages") / "480p"
DAVIS_ANNOTATIONS = Path("Annotations") / "480p"


def video_conditions(data: str | os.PathLike) -> tuple[Path, dict[str, Path]]:
    """(annotations folder, {condition: frames folder}) of a DAVIS or degraded-video layout."""
    data = Path(data)
    if (data / DAVIS_ANNOTATIONS).is_dir() and (data / DAVIS_FRAMES).is_dir():
        return data / DAVIS_ANNOTATIONS, {"clear": data / DAVIS_FRAMES}
    if (data / MASKS).is_dir():
        conditions = {p.name: p for p in sorted(data.iterdir()) if p.is_dir() and p.name != MASKS and not p.name.startswith(".")}
        if conditions:
            return data / MASKS, conditions
    raise InputError(f"{data}: neither DAVIS ({DAVIS_FRAMES}/, {DAVIS_ANNOTATIONS}/) nor degraded videos (masks/, <condition>/)")


def read_labels(path: Path) -> np.ndarray:
    """(H, W) object ids of an annotation frame (a palette PNG reads as its indices)."""
    pixels = read_pixels(path, what="annotation")
    return pixels if pixels.ndim == 2 else pixels[..., 0]


def first_frame_prompts(labels: np.ndarray, kind: str, where: str) -> list[VideoPrompt]:
    """One prompt per object of the first annotation: its mask, or its box (x0, y0, x1, y1)."""
    prompts = []
    for obj_id in sorted(int(v) for v in np.unique(labels) if v not in (0, VOID_LABEL)):
        mask = labels == obj_id
        if kind == "mask":
            prompts.append(VideoPrompt(0, obj_id, mask=mask, where=where))
        else:
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            prompts.append(VideoPrompt(0, obj_id, prompt=Prompt(box=box, where=where), where=where))
    if not prompts:
        raise InputError(f"{where}: the first annotation frame holds no object")
    return prompts


def evaluate_sequence(predictor, frames: Path, annotations: Path, kind: str) -> SequenceScores:
    """Tracks one sequence from its first annotation and scores every frame."""
    files = numbered_frames(annotations)
    with FrameFolder(frames) as source:
        if len(files) != len(source):
            raise InputError(f"{annotations}: {len(files)} annotation frames for the {len(source)} frames of {frames}")
        first = read_labels(files[0])
        prompts = first_frame_prompts(first, kind, str(files[0]))
        obj_ids = [prompt.obj_id for prompt in prompts]
        scores = SequenceScores(len(source))
        for frame, masks in track(predictor, source, prompts):
            scores.add(frame, read_labels(files[frame]), masks, obj_ids)
    return scores


def evaluate_videos(
    predictor, data: str | os.PathLike, kind: str = "mask", on_sequence: Optional[Callable[[str, str], None]] = None
) -> dict[str, dict[str, float]]:
    """{condition: {"J", "F", "J&F"}} over every sequence, each object weighing the same (DAVIS)."""
    annotations, conditions = video_conditions(data)
    sequences = sorted(p.name for p in annotations.iterdir() if p.is_dir())
    if not sequences:
        raise InputError(f"{annotations}: no annotated sequences")
    results = {}
    for condition, root in conditions.items():
        scores = []
        for sequence in sequences:
            scores.append(evaluate_sequence(predictor, root / sequence, annotations / sequence, kind))
            if on_sequence is not None:
                on_sequence(condition, sequence)
        results[condition] = pooled_means(scores)
    return results

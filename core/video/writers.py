"""Per-frame writers for tracked masks, every file atomic, resumable by frame.

For a video whose outputs are named `<video>` (`sources.output_name`) under DIR:

| format  | files |
|---|---|
| `png`   | `DIR/<video>/<obj_id>/<frame>.png` (0/255), one folder per object |
| `label` | `DIR/<video>/<frame>.png`: 16-bit labels, the object id inside its mask, 0 elsewhere |
| `coco`  | `DIR/<video>.json`: COCO RLE per frame and object (`.rle/` holds the frames until the end) |
| overlay | `DIR/<video>/overlay/<frame>.png` tinted frames; as `mp4`, `DIR/<video>_overlay.mp4` |

Frames are numbered with five digits (`00000.png`) as DAVIS does. A frame is done when each
writer has its files; `finish` writes what covers the whole video once every frame is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from ..io import atomic_path, encode_rle, read_image, write_image, write_mask, write_text
from ..inference.mask_writers import palette
from .sources import VideoInfo, write_video

FrameMasks = Mapping[int, np.ndarray]  # object id -> (H, W) bool mask
VIDEO_FORMATS = ("png", "label", "coco")
OVERLAY_KINDS = ("frames", "mp4")
RLE_PARTS = ".rle"
OVERLAY_ALPHA = 0.5


def frame_file(frame: int, suffix: str = ".png") -> str:
    return f"{frame:05d}{suffix}"


class VideoWriter(Protocol):
    def frame_done(self, frame: int) -> bool:
        """Whether frame `frame`'s files exist."""

    def write(self, frame: int, image: np.ndarray, masks: FrameMasks) -> None:
        """Writes one frame's outputs: the frame (H, W, 3) uint8 and each object's mask."""

    def finish(self) -> None:
        """Writes what covers the whole video, once every frame is written."""


class PngMasks:
    """`DIR/<video>/<obj_id>/<frame>.png` per object and frame."""

    def __init__(self, folder: Path, obj_ids: Sequence[int]) -> None:
        self.folder, self.obj_ids = folder, list(obj_ids)

    def frame_done(self, frame: int) -> bool:
        return all((self.folder / str(obj_id) / frame_file(frame)).is_file() for obj_id in self.obj_ids)

    def write(self, frame: int, image: np.ndarray, masks: FrameMasks) -> None:
        for obj_id in self.obj_ids:
            write_mask(self.folder / str(obj_id) / frame_file(frame), masks[obj_id])

    def finish(self) -> None:
        pass


def label_image(masks: FrameMasks, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint16 object ids; where masks overlap the larger id is kept."""
    labels = np.zeros(size, dtype=np.uint16)
    for obj_id in sorted(masks):
        labels[masks[obj_id]] = obj_id
    return labels


class LabelMasks:
    """`DIR/<video>/<frame>.png`: one 16-bit label image per frame."""

    def __init__(self, folder: Path, size: tuple[int, int]) -> None:
        self.folder, self.size = folder, size

    def frame_done(self, frame: int) -> bool:
        return (self.folder / frame_file(frame)).is_file()

    def write(self, frame: int, image: np.ndarray, masks: FrameMasks) -> None:
        write_image(self.folder / frame_file(frame), label_image(masks, self.size))

    def finish(self) -> None:
        pass


class RleMasks:
    """`DIR/<video>.json`: {"video", "num_frames", "height", "width", "fps", "annotations":
    [{"frame", "obj_id", "segmentation": RLE}, ...]} in frame then object order; each frame goes
    to `DIR/<video>/.rle/<frame>.json` first so a run can resume."""

    def __init__(self, folder: Path, name: str, info: VideoInfo) -> None:
        self.parts = folder / RLE_PARTS
        self.path = folder.parent / f"{folder.name}.json"
        self.name, self.info = name, info

    def frame_done(self, frame: int) -> bool:
        return self.path.is_file() or (self.parts / frame_file(frame, ".json")).is_file()

    def write(self, frame: int, image: np.ndarray, masks: FrameMasks) -> None:
        records = [{"frame": frame, "obj_id": obj_id, "segmentation": encode_rle(masks[obj_id][None])[0]} for obj_id in sorted(masks)]
        write_text(self.parts / frame_file(frame, ".json"), json.dumps(records))

    def finish(self) -> None:
        if self.path.is_file():
            return
        annotations = []
        for frame in range(self.info.num_frames):
            annotations.extend(json.loads((self.parts / frame_file(frame, ".json")).read_text(encoding="utf-8")))
        height, width = self.info.size
        document = {"video": self.name, "num_frames": self.info.num_frames, "height": height, "width": width,
                    "fps": self.info.fps, "annotations": annotations}
        write_text(self.path, json.dumps(document))
        shutil.rmtree(self.parts)


def tint(image: np.ndarray, masks: FrameMasks) -> np.ndarray:
    """The frame (H, W, 3) uint8 with each object's mask tinted in its colour (by object id)."""
    canvas = image.astype(np.float32)
    colours = palette(max(masks, default=0) + 1).astype(np.float32)
    for obj_id, mask in sorted(masks.items()):
        canvas[mask] = (1 - OVERLAY_ALPHA) * canvas[mask] + OVERLAY_ALPHA * colours[obj_id]
    return canvas.round().astype(np.uint8)


class Overlay:
    """Tinted frames in `DIR/<video>/overlay/`; as `mp4`, `finish` encodes them into
    `DIR/<video>_overlay.mp4` at the video's frame rate and removes them."""

    def __init__(self, folder: Path, info: VideoInfo, kind: str) -> None:
        if kind not in OVERLAY_KINDS:
            raise ValueError(f"overlay kind must be one of {', '.join(OVERLAY_KINDS)}, not {kind!r}")
        self.frames = folder / "overlay"
        self.video = folder.parent / f"{folder.name}_overlay.mp4"
        self.info, self.kind = info, kind

    def frame_done(self, frame: int) -> bool:
        return (self.kind == "mp4" and self.video.is_file()) or (self.frames / frame_file(frame)).is_file()

    def write(self, frame: int, image: np.ndarray, masks: FrameMasks) -> None:
        write_image(self.frames / frame_file(frame), tint(image, masks))

    def finish(self) -> None:
        if self.kind != "mp4" or self.video.is_file():
            return
        frames = (read_image(self.frames / frame_file(frame)) for frame in range(self.info.num_frames))
        with atomic_path(self.video) as tmp:
            write_video(tmp, frames, self.info.fps)
        shutil.rmtree(self.frames)


def make_video_writers(
    output_dir: Path, name: str, info: VideoInfo, obj_ids: Sequence[int], output_format: str, overlay: str | None
) -> list[VideoWriter]:
    """The writers of one video's outputs, named `name` under `output_dir`."""
    if output_format not in VIDEO_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(VIDEO_FORMATS)}, not {output_format!r}")
    folder = Path(output_dir) / name
    writers: list[VideoWriter] = [
        {"png": lambda: PngMasks(folder, obj_ids), "label": lambda: LabelMasks(folder, info.size),
         "coco": lambda: RleMasks(folder, name, info)}[output_format]()
    ]
    if overlay is not None:
        writers.append(Overlay(folder, info, overlay))
    return writers

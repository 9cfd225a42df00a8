"""Degrading videos consistently over time, on `core.degradations`' types.

A degradation's random parameters and fields come from a seed; how the seed is chosen per frame
makes it behave as the world does:

* steady (fog, brightness, contrast, colour jitter, resampling/zoom/glass-free blurs, elastic
  warp, ...): every frame of a video takes the video's seed, so the fog bank or the exposure stays put;
* falling (rain, snow): every frame takes the video's seed too, but the degradation is applied to
  the frame rolled up by a distance that grows with time and the result rolled back, so the streaks
  and flakes fall down the picture while the scene stays where it is (both are per-pixel
  composites over the image, so the roll changes nothing else);
* per frame (the noises, JPEG, frosted glass, the mixed and LQSeg chains): a seed per frame, as
  a camera's noise and a codec's blocks change from frame to frame;
* motion blur: the frames of a shutter window around each frame averaged, so the blur follows
  the motion in the video (of the camera and of each object) rather than a random line.

Every frame's output depends only on (seed, type, video name, frame index) and the source frames,
so a resumed run writes the same frames.

Layout under OUTPUT (frames numbered as the source: `00000.jpg`, ...):
`clear/<video>/`, `masks/<video>/` (the annotations, copied byte for byte) and `<type>/<video>/`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..io import read_image_size, require_output_dir
from ..degradations import DEGRADATIONS, LQSEG_TYPES
from ..degradations.dataset import copy_clear, file_seed, save_image
from ..degradations.preview import CLEAR, MIXED, apply, to_tensor, to_uint8
from ..degradations.run import MASKS, DegradeSummary
from ..errors import InputError
from ..parallel.shard import Shard, shard_items
from .sources import FrameFolder, FrameSource, numbered_frames, find_sources, open_source, output_name
from .writers import frame_file

# Distance a falling layer moves per frame, as a fraction of the frame height.
FALL_PER_FRAME = {"rain": 0.06, "snow": 0.015}
PER_FRAME = ("gauss_noise", "ISO_noise", "impulse_noise", "compression", "frosted_glass_blur", MIXED, *LQSEG_TYPES)
MOTION_BLUR = "motion_blur"
# Frames averaged for motion blur at levels 1..5: the shutter open over that many frame times.
SHUTTER_FRAMES = (3, 5, 7, 9, 11)
FRAME_BATCH = 8


def timing(kind: str) -> str:
    """How `kind` changes over time: 'steady', 'falling', 'per frame' or 'shutter'."""
    if kind in FALL_PER_FRAME:
        return "falling"
    if kind in PER_FRAME:
        return "per frame"
    return "shutter" if kind == MOTION_BLUR else "steady"


def frame_seeds(seed: int, kind: str, video: str, frames: Sequence[int]) -> list[int]:
    """The seed of each frame: one per video, or one per frame for the per-frame types."""
    if timing(kind) == "per frame":
        return [file_seed(seed, kind, f"{video}/{frame}") for frame in frames]
    return [file_seed(seed, kind, video)] * len(frames)


def fall_offset(kind: str, frame: int, height: int) -> int:
    """Rows a falling layer has moved down by `frame`, modulo the height."""
    return round(frame * FALL_PER_FRAME[kind] * height) % height


def shutter(source: FrameSource, frame: int, level: int, device: torch.device) -> torch.Tensor:
    """(1, 3, H, W): the mean of the frames in the shutter window centred on `frame` (the window is
    cut at the video's ends)."""
    half = SHUTTER_FRAMES[level - 1] // 2
    window = range(max(0, frame - half), min(len(source), frame + half + 1))
    return sum(to_tensor(source[index], device) for index in window) / len(window)


def degrade_frames(
    source: FrameSource, frames: Sequence[int], kind: str, *, level: int, seed: int, device: torch.device
) -> np.ndarray:
    """(len(frames), H, W, 3) uint8: the frames of `source` degraded by `kind` over time."""
    if timing(kind) == "shutter":
        return to_uint8(torch.cat([shutter(source, frame, level, device) for frame in frames]))
    batch = torch.cat([to_tensor(source[frame], device) for frame in frames])
    seeds = frame_seeds(seed, kind, source.name, frames)
    if timing(kind) != "falling":
        return to_uint8(apply(batch, kind, level, seeds))
    height = batch.shape[-2]
    shifts = [fall_offset(kind, frame, height) for frame in frames]
    rolled = torch.stack([image.roll(-shift, dims=-2) for image, shift in zip(batch, shifts)])
    degraded = apply(rolled, kind, level, seeds)
    return to_uint8(torch.stack([image.roll(shift, dims=-2) for image, shift in zip(degraded, shifts)]))


@dataclass(frozen=True)
class VideoJob:
    """One video: its source path, output name, frame count and its annotation frames (None: no masks)."""

    path: Path
    name: str
    num_frames: int
    masks: Optional[tuple[Path, ...]] = None


def _annotations(masks_dir: Path, source: FrameSource) -> tuple[Path, ...]:
    """The video's annotation frames in `masks_dir/<name>/` (DAVIS's Annotations/480p/<seq>/):
    one per frame, each of the video's size; InputError otherwise."""
    folder = masks_dir / output_name(source)
    files = numbered_frames(folder)
    if len(files) != len(source):
        raise InputError(f"{folder}: {len(files)} annotation frames for the {len(source)} frames of {source.path}")
    for file in (files[0], files[-1]):
        if read_image_size(file) != source.info.size:
            height, width = source.info.size
            raise InputError(f"{file}: annotation size differs from the video's {width}x{height}")
    return tuple(files)


class VideoDegradeRun:
    """A planned run over videos; `run` writes every missing frame, `FRAME_BATCH` frames at a time."""

    def __init__(self, jobs: Sequence[VideoJob], kinds: Sequence[str], output: Path, *, level: int, seed: int,
                 device: torch.device, overwrite: bool) -> None:
        self.jobs, self.kinds, self.output = list(jobs), list(kinds), output
        self.level, self.seed, self.device, self.overwrite = level, seed, device, overwrite
        self.with_masks = any(job.masks is not None for job in self.jobs)

    @property
    def folders(self) -> list[str]:
        return [CLEAR] + ([MASKS] if self.with_masks else []) + self.kinds

    @property
    def num_frames(self) -> int:
        return sum(job.num_frames for job in self.jobs)

    def part(self, shard: Optional[Shard]) -> "VideoDegradeRun":
        """The videos `shard` writes (balanced by frames); the whole run for None."""
        jobs = shard_items(self.jobs, [float(job.num_frames) for job in self.jobs], shard)
        return VideoDegradeRun(jobs, self.kinds, self.output, level=self.level, seed=self.seed, device=self.device,
                               overwrite=self.overwrite)

    def _target(self, folder: str, job: VideoJob, frame: int, suffix: str) -> Path:
        return self.output / folder / job.name / frame_file(frame, suffix)

    def run(self, on_progress: Optional[Callable[[int], None]] = None) -> DegradeSummary:
        """Writes every missing frame; `on_progress(n)` after each n frames of a video."""
        summary = DegradeSummary(self.folders)
        for job in self.jobs:
            with open_source(job.path) as source:
                suffix = source.files[0].suffix.lower() if isinstance(source, FrameFolder) else ".jpg"
                for start in range(0, job.num_frames, FRAME_BATCH):
                    frames = range(start, min(start + FRAME_BATCH, job.num_frames))
                    self._batch(source, job, frames, suffix, summary)
                    if on_progress is not None:
                        on_progress(len(frames))
        return summary

    def _missing(self, path: Path) -> bool:
        return self.overwrite or not path.exists()

    def _batch(self, source: FrameSource, job: VideoJob, frames: range, suffix: str, summary: DegradeSummary) -> None:
        started = time.perf_counter()
        for frame in frames:
            clear = self._target(CLEAR, job, frame, suffix)
            if not self._missing(clear):
                summary.kept[CLEAR] += 1
            elif isinstance(source, FrameFolder):
                copy_clear(source.files[frame], clear)
                summary.written[CLEAR] += 1
            else:
                save_image(clear, source[frame])
                summary.written[CLEAR] += 1
            if job.masks is not None:
                target = self._target(MASKS, job, frame, job.masks[frame].suffix)
                if self._missing(target):
                    copy_clear(job.masks[frame], target)
                    summary.written[MASKS] += 1
                else:
                    summary.kept[MASKS] += 1
        summary.seconds[CLEAR] += time.perf_counter() - started
        for kind in self.kinds:
            todo = [frame for frame in frames if self._missing(self._target(kind, job, frame, suffix))]
            summary.kept[kind] += len(frames) - len(todo)
            if not todo:
                continue
            started = time.perf_counter()
            pictures = degrade_frames(source, todo, kind, level=self.level, seed=self.seed, device=self.device)
            for frame, picture in zip(todo, pictures):
                save_image(self._target(kind, job, frame, suffix), picture)
            summary.written[kind] += len(todo)
            summary.seconds[kind] += time.perf_counter() - started


def plan_video_degrade(
    source: str | os.PathLike,
    output: str | os.PathLike,
    kinds: Sequence[str],
    *,
    masks_dir: Optional[str | os.PathLike] = None,
    level: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
) -> VideoDegradeRun:
    """Opens every video of `source` (a video, a frame folder, or a folder of them) and checks its
    annotations; nothing is written. InputError for any bad video or annotation folder."""
    output = require_output_dir(output)
    unknown = [kind for kind in kinds if kind not in DEGRADATIONS and kind not in (MIXED, *LQSEG_TYPES)]
    if unknown:
        raise ValueError(f"unknown degradation {unknown[0]!r}")
    jobs = []
    for path in find_sources(source):
        with open_source(path) as video:
            masks = _annotations(Path(masks_dir), video) if masks_dir is not None else None
            jobs.append(VideoJob(path, output_name(video), len(video), masks))
    return VideoDegradeRun(jobs, kinds, output, level=level, seed=seed, device=torch.device(device), overwrite=overwrite)

"""`robustsam track` as a library: every video of an input checked against its prompts before any
output, then tracked and written frame by frame, resumable.

    run = plan_track("clips/", "prompts.json", "out/", output_format="label", overlay="mp4")
    summary = run.run(load_video_predictor("sam2.1_hiera_t.pt"))

A video whose outputs are all there is not tracked again. Otherwise it is tracked from the start
(SAM 2's memory of earlier frames cannot be restored from masks) and only missing frames are
written, so a resumed run ends with the files an uninterrupted one writes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError
from ..io import require_output_dir
from ..parallel.shard import Shard, shard_items
from .prompts import VideoPrompt, load_video_prompts
from .sources import VideoInfo, find_sources, open_source, output_name
from .tracking import track
from .writers import make_video_writers


@dataclass(frozen=True, eq=False)
class TrackJob:
    """One video: its source path, output name, size and frame count, and its prompts."""

    path: Path
    name: str
    info: VideoInfo
    prompts: tuple[VideoPrompt, ...]

    @property
    def obj_ids(self) -> list[int]:
        return sorted({prompt.obj_id for prompt in self.prompts})


@dataclass
class VideoSummary:
    """What a run did with one video: frames written now and kept from an earlier run, seconds."""

    name: str
    num_frames: int
    written: int = 0
    kept: int = 0
    seconds: float = 0.0


@dataclass
class TrackRun:
    """A planned run: the videos (of this shard) and how to write them."""

    jobs: list[TrackJob]
    output: Path
    output_format: str = "png"
    overlay: Optional[str] = None
    overwrite: bool = False

    @property
    def num_frames(self) -> int:
        return sum(job.info.num_frames for job in self.jobs)

    def run(self, predictor, on_frames: Optional[Callable[[int], None]] = None) -> list[VideoSummary]:
        """Tracks and writes every video; `on_frames(n)` as n frames are done."""
        return [self._video(predictor, job, on_frames or (lambda frames: None)) for job in self.jobs]

    def _video(self, predictor, job: TrackJob, on_frames: Callable[[int], None]) -> VideoSummary:
        summary = VideoSummary(job.name, job.info.num_frames)
        writers = make_video_writers(self.output, job.name, job.info, job.obj_ids, self.output_format, self.overlay)
        done = lambda frame: not self.overwrite and all(writer.frame_done(frame) for writer in writers)  # noqa: E731
        if all(done(frame) for frame in range(job.info.num_frames)):
            summary.kept = job.info.num_frames
            on_frames(job.info.num_frames)
            return summary
        started = time.perf_counter()
        with open_source(job.path) as source:
            for frame, masks in track(predictor, source, job.prompts):
                if done(frame):
                    summary.kept += 1
                else:
                    image = source[frame]
                    for writer in writers:
                        writer.write(frame, image, masks)
                    summary.written += 1
                on_frames(1)
        for writer in writers:
            writer.finish()
        summary.seconds = time.perf_counter() - started
        return summary


def plan_track(
    source: str | os.PathLike,
    prompts: str | os.PathLike,
    output: str | os.PathLike,
    *,
    output_format: str = "png",
    overlay: Optional[str] = None,
    overwrite: bool = False,
    shard: Optional[Shard] = None,
) -> TrackRun:
    """Opens every video of `source` and checks its prompts; nothing is written. InputError for a
    bad video or prompt file, a video without prompts, or prompts for a video `source` lacks."""
    output = require_output_dir(output)
    prompt_set = load_video_prompts(prompts)
    jobs = []
    for path in find_sources(source):
        with open_source(path) as video:
            jobs.append(TrackJob(path, output_name(video), video.info, tuple(prompt_set.for_video(video))))
    names = {job.path.name for job in jobs}
    unknown = [name for name in prompt_set.prompts if name not in names]
    if unknown:
        raise InputError(f"{prompt_set.source}: prompts for '{unknown[0]}', which {source} does not hold")
    chosen = shard_items(jobs, [float(job.info.num_frames) for job in jobs], shard)
    return TrackRun(chosen, output, output_format, overlay, overwrite)

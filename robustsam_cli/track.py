"""`robustsam track`: follows prompted objects through videos with SAM 2's video predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from rich.table import Table

from core import resolve_device
from core.errors import InputError
from core.parallel import parse_shard
from core.video import OVERLAY_KINDS, VIDEO_FORMATS
from core.video.track_run import VideoSummary, plan_track
from core.video.tracking import load_video_predictor

from .defaults import console
from .options import device_option, image_progress

TRACK_MODES = ("sam",)


def _summary_table(summaries: list[VideoSummary], output: Path) -> Table:
    table = Table(title=f"robustsam track -> {output}")
    for column in ("video", "frames", "written", "kept", "seconds", "frames/s"):
        table.add_column(column, justify="left" if column == "video" else "right")
    for summary in summaries:
        rate = f"{summary.written / summary.seconds:.2f}" if summary.written and summary.seconds > 0 else "-"
        table.add_row(summary.name, str(summary.num_frames), str(summary.written), str(summary.kept),
                      f"{summary.seconds:.1f}", rate)
    return table


@click.command("track")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--prompts", "prompts_file", required=True, type=click.Path(path_type=Path),
              help='JSON keyed by video file or frame folder name: [{"frame": 0, "obj_id": 1, "box": [...]}, '
                   '{"frame": 40, "obj_id": 1, "points": [...], "labels": [...]}, {"frame": 0, "obj_id": 2, "mask": "m.png"}].')
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="SAM 2 / 2.1 checkpoint (Meta's, or a RobustSAM2 one: its SAM 2 weights are used).")
@click.option("--model-type", help="SAM 2 model type (sam2.1_hiera_t, ...); inferred from the checkpoint when omitted.")
@click.option("--mode", type=click.Choice(TRACK_MODES), default="sam", show_default=True,
              help="sam: SAM 2's own video predictor.")
@click.option("--format", "output_format", type=click.Choice(VIDEO_FORMATS), default="png", show_default=True,
              help="png: <video>/<obj_id>/<frame>.png; label: <video>/<frame>.png (16-bit object ids); coco: <video>.json (RLE).")
@click.option("--overlay", type=click.Choice(OVERLAY_KINDS), default=None,
              help="Also write tinted frames (<video>/overlay/) or an MP4 (<video>_overlay.mp4) to look at.")
@click.option("--overwrite", is_flag=True, help="Rewrite outputs that exist (by default finished frames are kept).")
@click.option("--shard", help="K/N: track shard K of N of the videos (split by frames); shards write disjoint files.")
@device_option()
def track(src: Path, prompts_file: Path, output: Path, checkpoint: Path, model_type: Optional[str], mode: str,
          output_format: str, overlay: Optional[str], overwrite: bool, shard: Optional[str], device: str) -> None:
    """Segment and follow the prompted objects through the videos in SRC: a video file (MP4, MOV,
    AVI, WebM, MKV), a folder of numbered frames (00000.jpg, ...), or a folder of them. Frames are
    decoded as they are needed; SAM 2 propagates forward from the first prompted frame, then back."""
    try:
        torch_device = resolve_device(device)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"--device: {error}".splitlines()[0]) from None
    run = plan_track(src, prompts_file, output, output_format=output_format, overlay=overlay, overwrite=overwrite,
                     shard=parse_shard(shard) if shard is not None else None)
    predictor = load_video_predictor(checkpoint, model_type, torch_device)
    err = console(stderr=True)
    with image_progress(err, transient=False, unit="frames") as progress:
        task = progress.add_task(f"tracking {len(run.jobs)} videos on {torch_device}", total=run.num_frames)
        summaries = run.run(predictor, lambda frames: progress.advance(task, frames))
    console().print(_summary_table(summaries, output))

"""Video: frame sources decoded lazily (video files, DAVIS frame folders), video prompt files,
per-frame mask writers, the DAVIS measures (J, F, J&F), degradations consistent over time, and
tracking with SAM 2's video predictor (`track`, `plan_track`, `evaluate_videos`)."""

from .degrade import VideoDegradeRun, degrade_frames, plan_video_degrade, timing
from .evaluation import evaluate_videos, video_conditions
from .metrics import (
    BOUNDARY_TOLERANCE,
    VOID_LABEL,
    SequenceScores,
    boundary_accuracy,
    boundary_map,
    pooled_means,
    region_similarity,
)
from .prompts import VideoPrompt, VideoPromptSet, load_video_prompts
from .sources import (
    FOLDER_FPS,
    VIDEO_EXTENSIONS,
    FrameFolder,
    FrameSource,
    VideoFile,
    VideoInfo,
    find_sources,
    holds_videos,
    numbered_frames,
    open_source,
    output_name,
    write_video,
)
from .track_run import TrackRun, plan_track
from .tracking import load_video_predictor, track
from .writers import OVERLAY_KINDS, VIDEO_FORMATS, FrameMasks, label_image, make_video_writers, tint

__all__ = [
    "BOUNDARY_TOLERANCE",
    "FOLDER_FPS",
    "OVERLAY_KINDS",
    "VIDEO_EXTENSIONS",
    "VIDEO_FORMATS",
    "VOID_LABEL",
    "FrameFolder",
    "FrameMasks",
    "FrameSource",
    "SequenceScores",
    "TrackRun",
    "VideoDegradeRun",
    "VideoFile",
    "VideoInfo",
    "VideoPrompt",
    "VideoPromptSet",
    "boundary_accuracy",
    "degrade_frames",
    "evaluate_videos",
    "boundary_map",
    "find_sources",
    "holds_videos",
    "numbered_frames",
    "label_image",
    "load_video_predictor",
    "load_video_prompts",
    "make_video_writers",
    "open_source",
    "output_name",
    "plan_track",
    "plan_video_degrade",
    "pooled_means",
    "region_similarity",
    "timing",
    "tint",
    "track",
    "video_conditions",
    "write_video",
]

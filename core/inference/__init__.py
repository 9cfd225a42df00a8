"""Running a model: opening any checkpoint (RobustSAM, SAM or GleSAM) as a predictor, the SamPredictor-compatible predictor, automatic masks, small-region removal,
and batch segmentation of image files into mask files."""

from .amg import RobustAutomaticMaskGenerator
from .glesam_predictor import GleSamPredictor
from .loading import ModelChoice, make_predictor, open_model, open_predictor, summarize
from .mask_writers import MaskRecord, MaskWriter, make_writers
from .predictor import RobustPredictor
from .segment import SegmentSummary, segment
from .small_regions import connected_components, remove_small_regions

__all__ = [
    "GleSamPredictor",
    "MaskRecord",
    "ModelChoice",
    "MaskWriter",
    "RobustAutomaticMaskGenerator",
    "RobustPredictor",
    "SegmentSummary",
    "connected_components",
    "make_predictor",
    "open_model",
    "open_predictor",
    "summarize",
    "make_writers",
    "remove_small_regions",
    "segment",
]

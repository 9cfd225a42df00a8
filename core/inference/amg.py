"""Automatic ("segment everything") mask generation on the robust or SAM path."""

from __future__ import annotations

from typing import Any

from segment_anything import SamAutomaticMaskGenerator

from ..model.robustsam import RobustSam
from .predictor import RobustPredictor


class RobustAutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """`segment_anything.SamAutomaticMaskGenerator` driven by a RobustPredictor.

    Takes SAM's generator parameters (points_per_side, pred_iou_thresh, ...) unchanged;
    `generate(image)` returns SAM's list of mask records.
    """

    def __init__(self, model: RobustSam, robust: bool = True, precision: str = "fp32", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.predictor = RobustPredictor(model, robust=robust, precision=precision)

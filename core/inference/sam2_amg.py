"""Segment-everything on SAM 2: `sam2`'s own automatic mask generator (its grid, batching, stability and
NMS steps) driven by a Sam2Predictor, so the robust path runs too; small regions are removed without OpenCV."""

from __future__ import annotations

from typing import Any

from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

from ..sam2.predictor import Sam2Predictor, quiet_jit_script
from .amg import RobustAutomaticMaskGenerator


class Sam2AutomaticMaskGenerator(SAM2AutomaticMaskGenerator):
    """SAM2AutomaticMaskGenerator's arguments and `generate(image)` records, on `predictor`'s path."""

    def __init__(self, predictor: Sam2Predictor, **kwargs: Any) -> None:
        # sam2's __init__ imports cv2 when min_mask_region_area > 0; set it after instead.
        min_area = kwargs.pop("min_mask_region_area", 0)
        with quiet_jit_script():  # sam2's __init__ builds a SAM2ImagePredictor of its own, replaced below
            super().__init__(predictor.model, **kwargs)
        self.min_mask_region_area = min_area
        self.predictor = predictor

    postprocess_small_regions = staticmethod(RobustAutomaticMaskGenerator.postprocess_small_regions)

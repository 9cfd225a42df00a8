"""`GleSamPredictor`: SamPredictor's API on GleSAM (encoder -> one-step enhancer -> decoder)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from .predictor import RobustPredictor

if TYPE_CHECKING:
    from ..glesam import GleSam  # needs the glesam extra; a GleSam argument means it is installed


class GleSamPredictor(RobustPredictor):
    """Encodes each image once, enhances its embedding with one U-Net step, then decodes any number of
    prompts on SAM's path (with GleSAM's fine-tuned decoder), so `segment`, AMG, `prior` and evaluation
    run on it unchanged. `features` is the enhanced embedding, `early_features` SAM's own.

    `enhancer_seconds` accumulates the wall time spent in the enhancer (the cost GleSAM adds to set_image).
    """

    method = "glesam"

    def __init__(self, model: "GleSam", precision: str = "fp32") -> None:
        self.glesam = model
        self.enhancer_seconds = 0.0
        super().__init__(model.sam, robust=False, precision=precision, exact_sam=False)

    @torch.inference_mode()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encodes a 1x3xHxW image resized with `self.transform`, then enhances its embedding (1, D, h, w)."""
        super().set_torch_image(transformed_image, original_image_size)
        start = time.perf_counter()
        with self._autocast():
            self.features = self.glesam.enhancer(self.features).float()
        self.enhancer_seconds += time.perf_counter() - start

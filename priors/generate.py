"""SAM / RobustSAM priors of degraded images: automatic masks -> gray-coded map, partition, features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import imageio.v3 as iio
import numpy as np
import torch

from core.io import atomic_path
from core.inference.amg import automatic_mask_generator
from core.inference.loading import make_predictor
from core.inference.predictor import RobustPredictor
from core.model.robustsam import RobustSam

from .encoding import gray_coded_map, masks_from_records, segment_partition

if TYPE_CHECKING:
    from core.glesam import GleSam
    from core.sam2 import RobustSam2

# The deblurring work's generator settings (SAM's defaults): no crops, no minimum region area.
PRIOR_GENERATOR_DEFAULTS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "min_mask_region_area": 0,
}


@dataclass
class Prior:
    """The prior of one image: gray (H, W) uint8, segments (M, H, W) uint8 {0, 1} tiling the image
    (None: not wanted), and, when asked for, the embedding (D, h, w) and early feature (C, h, w)."""

    gray: np.ndarray
    segments: Optional[np.ndarray]
    embedding: Optional[np.ndarray] = None
    early_feature: Optional[np.ndarray] = None


class _FeatureKeeper:
    """The predictor as the generator sees it: every attribute is the wrapped predictor's, except that
    the reset the generator calls after each image (SAM's `reset_image`, SAM 2's `reset_predictor`)
    first keeps its embedding and early feature."""

    def __init__(self, predictor: RobustPredictor) -> None:
        self.predictor = predictor
        self.kept: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def _keep(self) -> None:
        if self.predictor.is_image_set:
            self.kept = (self.predictor.features, self.predictor.early_features)

    def reset_image(self) -> None:
        self._keep()
        self.predictor.reset_image()

    def reset_predictor(self) -> None:
        self._keep()
        self.predictor.reset_predictor()


class PriorGenerator:
    """Runs automatic mask generation on degraded images and encodes the masks as priors.

    `model`: a RobustSam, a GleSam or a RobustSam2 (`core.inference.open_model` opens each); robust:
    RobustSAM's path (True) or SAM's / SAM 2's (False), ignored for GleSAM. The generator is the
    predictor's own (`core.inference.automatic_mask_generator`: SAM's, or SAM 2's on a SAM 2 model).
    `generator_kwargs` override PRIOR_GENERATOR_DEFAULTS (any argument the generators share;
    min_mask_region_area needs no OpenCV).
    """

    def __init__(self, model: RobustSam | GleSam | RobustSam2, robust: bool = True, precision: str = "fp32",
                 **generator_kwargs: Any) -> None:
        settings = {**PRIOR_GENERATOR_DEFAULTS, **generator_kwargs}
        predictor = _FeatureKeeper(make_predictor(model, robust=robust, precision=precision))
        self.generator = automatic_mask_generator(predictor, **settings)

    @property
    def predictor(self) -> RobustPredictor:
        """The predictor the generator runs (`set_image_batch` on it pre-encodes images for `__call__`)."""
        return self.generator.predictor

    def __call__(self, image: np.ndarray, partition: bool = True, features: bool = False) -> Prior:
        """(H, W, 3) uint8 RGB -> Prior; the partition only when `partition`, features only when `features`."""
        predictor = self.generator.predictor
        predictor.kept = None
        records = self.generator.generate(image)
        gray = gray_coded_map(masks_from_records(records, image.shape[:2]), shape=image.shape[:2])
        prior = Prior(gray, segment_partition(gray) if partition else None)
        if features:
            embedding, early = predictor.kept
            prior.embedding = embedding[0].float().cpu().numpy()
            prior.early_feature = early[0].float().cpu().numpy()
        return prior


def write_prior(files: dict[str, Path], prior: Prior) -> None:
    """Writes the prior's files atomically; the gray map last, as it marks the image done."""
    if prior.embedding is not None:
        with atomic_path(files["features"]) as tmp:
            np.savez_compressed(tmp, embedding=prior.embedding, early_feature=prior.early_feature)
    if prior.segments is not None:
        with atomic_path(files["segments"]) as tmp:
            np.savez_compressed(tmp, masks=prior.segments, gray_values=np.unique(prior.gray))
    with atomic_path(files["gray"]) as tmp:
        iio.imwrite(tmp, prior.gray, extension=".png")

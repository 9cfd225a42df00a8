"""Automatic ("segment everything") mask generation on the robust or SAM path, without OpenCV."""

from __future__ import annotations

from typing import Any, Optional

import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.utils.amg import MaskData, batched_mask_to_box, mask_to_rle_pytorch, rle_to_mask
from torchvision.ops.boxes import batched_nms

from ..model.robustsam import RobustSam
from .predictor import RobustPredictor
from .small_regions import remove_small_regions


class RobustAutomaticMaskGenerator(SamAutomaticMaskGenerator):
    """`segment_anything.SamAutomaticMaskGenerator` driven by a RobustPredictor.

    Takes SAM's generator parameters (points_per_side, pred_iou_thresh, ..., min_mask_region_area)
    unchanged; `generate(image)` returns SAM's list of mask records. `min_mask_region_area` works
    without OpenCV. `predictor`: the predictor to run (one whose features the caller keeps, or any
    SamPredictor-shaped one); by default a RobustPredictor of `model` with `robust` and `precision`.
    """

    def __init__(
        self,
        model: RobustSam,
        robust: bool = True,
        precision: str = "fp32",
        predictor: Optional[SamPredictor] = None,
        **kwargs: Any,
    ) -> None:
        # SAM's __init__ imports cv2 when min_mask_region_area > 0; set it after instead.
        min_area = kwargs.pop("min_mask_region_area", 0)
        super().__init__(model, **kwargs)
        self.min_mask_region_area = min_area
        self.predictor = predictor if predictor is not None else RobustPredictor(model, robust=robust, precision=precision)

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """SamAutomaticMaskGenerator.postprocess_small_regions on `core.inference.small_regions`: fills
        small holes, drops small islands, then removes new duplicates by box NMS preferring unchanged masks."""
        if len(mask_data["rles"]) == 0:
            return mask_data
        masks, unchanged = [], []
        for rle in mask_data["rles"]:
            mask, filled = remove_small_regions(rle_to_mask(rle), min_area, mode="holes")
            mask, dropped = remove_small_regions(mask, min_area, mode="islands")
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (filled or dropped)))
        stacked = torch.stack(masks)
        boxes = batched_mask_to_box(stacked)
        keep = batched_nms(boxes.float(), torch.as_tensor(unchanged), torch.zeros(len(boxes)), iou_threshold=nms_thresh)
        for index in keep.tolist():
            if unchanged[index] == 0.0:
                mask_data["rles"][index] = mask_to_rle_pytorch(stacked[index][None])[0]
                mask_data["boxes"][index] = boxes[index]
        mask_data.filter(keep)
        return mask_data


def automatic_mask_generator(predictor: Any, **options: Any) -> Any:
    """The segment-everything generator for `predictor`: SAM 2's (core.sam2.Sam2AutomaticMaskGenerator) for a
    SAM 2 predictor, else RobustAutomaticMaskGenerator; `options` are the generators' shared arguments."""
    if getattr(predictor, "backbone", "sam") == "sam2":
        from .sam2_amg import Sam2AutomaticMaskGenerator

        return Sam2AutomaticMaskGenerator(predictor, **options)
    # SAM's generator reads only `img_size` from its model: the predictor's `model` serves.
    return RobustAutomaticMaskGenerator(predictor.model, predictor=predictor, **options)

"""One training forward pass as a module, so DistributedDataParallel can wrap it and sync gradients."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from core.model.robustsam import RobustSam

from .losses import base_losses, robust_losses


def model_input(model: RobustSam, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, S, S) in [0, 1] -> normalised (B, 3, I, I) at the encoder's input size I."""
    size = model.image_encoder.img_size
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (images * 255 - model.pixel_mean) / model.pixel_std


def prompt_embeddings(
    model: RobustSam, points: Optional[torch.Tensor], boxes: Optional[torch.Tensor], scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sparse (B, T, D), dense (B, D, h, w)) for points (B, P, 2) or boxes (B, 4) in pixels of the
    S-sized image; `scale` = I / S maps them to the encoder's input frame. Positive points only."""
    point_input = None
    if points is not None:
        point_input = (points * scale, torch.ones(points.shape[:2], device=points.device, dtype=torch.int64))
    return model.prompt_encoder(points=point_input, boxes=None if boxes is None else boxes * scale, masks=None)


class TrainStep(nn.Module):
    """Computes the loss components of one batch.

    stage "robust": teacher = clear image on the clear path (no gradients), student = degraded image on
    the robust path; encoders always run without gradients. stage "base": SAM itself on the clear image,
    SAM path, every SAM parameter trainable.
    """

    def __init__(self, model: RobustSam, stage: str, loss: str, weights: dict[str, float]) -> None:
        super().__init__()
        self.model = model
        self.stage = stage
        self.loss = loss
        self.weights = weights

    def forward(
        self,
        clear: torch.Tensor,
        degraded: torch.Tensor,
        masks: torch.Tensor,
        points: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
        image_index: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """clear, degraded (B, 3, S, S) in [0, 1]; masks (N, S, S); points (N, P, 2) or boxes (N, 4);
        image_index (N,): the image of each prompt set (None: N = B, one each). Each image is encoded once."""
        model = self.model
        decoder = model.mask_decoder
        scale = model.image_encoder.img_size / clear.shape[-1]
        pe = model.prompt_encoder.get_dense_pe()
        per_prompt = (lambda tensor: tensor) if image_index is None else (lambda tensor: tensor[image_index])
        if self.stage == "base":
            embedding, _ = model.encode(model_input(model, clear))
            sparse, dense = prompt_embeddings(model, points, boxes, scale)
            output = decoder.decode(per_prompt(embedding), pe, sparse, dense, None, robust=False)
            return base_losses(output, masks, self.weights)

        with torch.no_grad():
            clear_embedding, clear_early = model.encode(model_input(model, clear))
            degraded_embedding, degraded_early = model.encode(model_input(model, degraded))
            sparse, dense = prompt_embeddings(model, points, boxes, scale)
            teacher_feature = per_prompt(decoder.image_feature(clear_embedding, clear_early, robust=False))
            teacher = decoder.decode(per_prompt(clear_embedding), pe, sparse, dense, teacher_feature, robust=False)
        student_feature = per_prompt(decoder.image_feature(degraded_embedding, degraded_early, robust=True))
        student = decoder.decode(per_prompt(degraded_embedding), pe, sparse, dense, student_feature, robust=True)
        return robust_losses(student, teacher, student_feature, teacher_feature, masks, self.loss, self.weights)

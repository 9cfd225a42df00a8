"""One training forward pass as a module, so DistributedDataParallel can wrap it and sync gradients."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from core.model.backbone import Backbone

from .losses import base_losses, robust_losses


def prompt_embeddings(
    model: Backbone, points: Optional[torch.Tensor], boxes: Optional[torch.Tensor], scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sparse (B, T, D), dense (B, D, h, w)) for points (B, P, 2) or boxes (B, 4) in pixels of the
    S-sized image; `scale` = I / S maps them to the encoder's input frame. Positive points only."""
    labels = None if points is None else torch.ones(points.shape[:2], device=points.device, dtype=torch.int64)
    return model.embed_prompts(None if points is None else points * scale, labels, None if boxes is None else boxes * scale)


class TrainStep(nn.Module):
    """Computes the loss components of one batch.

    stage "robust": teacher = clear image on the clear path (no gradients), student = degraded image on
    the robust path; encoders always run without gradients. stage "base": SAM itself on the clear image,
    SAM path, every SAM parameter trainable.
    """

    def __init__(self, model: Backbone, stage: str, loss: str, weights: dict[str, float]) -> None:
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
        decoder = model.decoder
        scale = model.input_size / clear.shape[-1]
        per_prompt = (lambda tensor: tensor) if image_index is None else (lambda tensor: tensor[image_index])
        if self.stage == "base":
            encoding = model.encode_images(model.normalize_images(clear))
            sparse, dense = prompt_embeddings(model, points, boxes, scale)
            output = model.decode_prompts(encoding.select(image_index), sparse, dense, None, robust=False)
            return base_losses(output, masks, self.weights)

        with torch.no_grad():
            clear_encoding = model.encode_images(model.normalize_images(clear))
            degraded_encoding = model.encode_images(model.normalize_images(degraded))
            sparse, dense = prompt_embeddings(model, points, boxes, scale)
            teacher_feature = per_prompt(decoder.image_feature(clear_encoding.embedding, clear_encoding.early, robust=False))
            teacher = model.decode_prompts(clear_encoding.select(image_index), sparse, dense, teacher_feature, robust=False)
        student_feature = per_prompt(decoder.image_feature(degraded_encoding.embedding, degraded_encoding.early, robust=True))
        student = model.decode_prompts(degraded_encoding.select(image_index), sparse, dense, student_feature, robust=True)
        return robust_losses(student, teacher, student_feature, teacher_feature, masks, self.loss, self.weights)

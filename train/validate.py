"""Validation IoU of the single-mask output on clear and degraded images, robust path and SAM path."""

from __future__ import annotations

from typing import Sequence

import torch

from core.model.backbone import Backbone

from .data import Batch
from .losses import mask_iou
from .step import prompt_embeddings


@torch.no_grad()
def batch_logits(model: Backbone, images: torch.Tensor, batch: Batch, robust: bool) -> torch.Tensor:
    """Single-mask logits (N, h, w) for `images` (B, 3, S, S) with the batch's N prompt sets."""
    encoding = model.encode_images(model.normalize_images(images)).select(batch.image_index)
    sparse, dense = prompt_embeddings(model, batch.points, batch.boxes, model.input_size / images.shape[-1])
    feature = model.decoder.image_feature(encoding.embedding, encoding.early, robust=True) if robust else None
    output = model.decode_prompts(encoding, sparse, dense, feature, robust=robust)
    return output.masks[:, 0]


@torch.no_grad()
def validation_iou(
    model: Backbone, batches: Sequence[Batch], paths: Sequence[str] = ("robust", "sam")
) -> dict[str, float]:
    """Mean IoU per path and condition, keys like "robust/degraded"; the model must be in eval mode."""
    totals: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        for path in paths:
            for condition, images in (("degraded", batch.degraded), ("clear", batch.clear)):
                logits = batch_logits(model, images, batch, robust=path == "robust")
                totals.setdefault(f"{path}/{condition}", []).append(mask_iou(logits.float(), batch.masks))
    return {key: float(torch.cat(values).mean()) for key, values in totals.items()}

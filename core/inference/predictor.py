"""`RobustPredictor`: `segment_anything.SamPredictor` on RobustSAM, robust path by default."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from segment_anything import SamPredictor

from ..model.robustsam import RobustSam

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = tuple(_AUTOCAST_DTYPES)
# Prompts decoded together on a CPU. The decoder's per-prompt activations, (4096, 256) per
# transformer step and (32, 256, 256) mask features, fall out of the cache in larger batches:
# on the 2-core reference machine 2 at a time cost 124 ms per robust prompt, 10 at a time 147.
CPU_PROMPT_CHUNK = 2


def check_precision(precision: str) -> None:
    """Raises ValueError unless `precision` is 'fp32', 'bf16' or 'fp16'."""
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(_AUTOCAST_DTYPES)}, not {precision!r}")


def precision_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a predictor's `precision` on `device` (none for 'fp32')."""
    dtype = _AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class RobustPredictor(SamPredictor):
    """Computes the image embedding, early feature and image robust feature once per image,
    then decodes any number of prompts, batched, on the robust path or SAM's own path.

    Arguments:
      model: a RobustSam.
      robust: True for RobustSAM's path, False for SAM's (identical to SamPredictor).
      precision: 'fp32', or 'bf16' / 'fp16' autocast; the Fourier step stays in float32.
      exact_sam: on SAM's path, encode with segment_anything's own encoder forward so that every
        output equals SamPredictor's bit for bit (the fused-attention forward differs by ~1e-6).
    """

    model: RobustSam
    method = "robustsam"  # which robust-SAM method runs; GleSamPredictor says "glesam"

    def __init__(self, model: RobustSam, robust: bool = True, precision: str = "fp32", exact_sam: bool = True) -> None:
        check_precision(precision)
        self.robust = robust
        self.precision = precision
        self.exact_sam = exact_sam
        super().__init__(model)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return precision_autocast(self.device, self.precision)

    @torch.inference_mode()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encodes a 1x3xHxW image already resized with `self.transform` (long side = model input)."""
        size = self.model.image_encoder.img_size
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3) or max(transformed_image.shape[2:]) != size:
            raise ValueError(f"set_torch_image input must be 1x3xHxW with long side {size}, got {tuple(transformed_image.shape)}")
        self.reset_image()
        self.original_size = tuple(original_image_size)
        self.input_size = tuple(transformed_image.shape[-2:])
        with self._autocast():
            exact = True if not self.robust and self.exact_sam else None
            features, early = self.model.encode(self.model.preprocess(transformed_image), exact=exact)
        self.features, self.early_features = features.float(), early.float()
        if self.robust:
            self.robust_features = self._image_feature()
        self.is_image_set = True

    def _image_feature(self) -> torch.Tensor:
        with self._autocast():
            return self.model.mask_decoder.image_feature(self.features, self.early_features).float()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch for N prompts at once: points (N, P, 2) + labels (N, P),
        boxes (N, 4), mask_input (N, 1, 256, 256), in the transformed frame.

        Returns masks (N, C, H, W), iou (N, C), low-res logits (N, C, 256, 256); C = 3 or 1.
        Prompts never mix: row i equals a call with prompt i alone. On a CPU they are decoded
        `CPU_PROMPT_CHUNK` at a time.
        """
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        prompts = (point_coords, point_labels, boxes, mask_input)
        rows = max((len(prompt) for prompt in prompts if prompt is not None), default=1)
        if self.device.type == "cpu" and rows > CPU_PROMPT_CHUNK:
            chunks = [
                self.predict_torch(
                    *(None if prompt is None else prompt[start : start + CPU_PROMPT_CHUNK] for prompt in prompts),
                    multimask_output=multimask_output,
                    return_logits=return_logits,
                )
                for start in range(0, rows, CPU_PROMPT_CHUNK)
            ]
            return tuple(torch.cat(parts) for parts in zip(*chunks))  # type: ignore[return-value]
        if self.robust and self.robust_features is None:
            self.robust_features = self._image_feature()
        points = (point_coords, point_labels) if point_coords is not None else None
        with self._autocast():
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
            low_res, iou = self.model.mask_decoder(
                image_embeddings=self.features,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                image_feature=self.robust_features if self.robust else None,
                robust=self.robust,
            )
        low_res, iou = low_res.float(), iou.float()
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def reset_image(self) -> None:
        """Forgets the current image and its features."""
        super().reset_image()
        self.early_features: Optional[torch.Tensor] = None
        self.robust_features: Optional[torch.Tensor] = None

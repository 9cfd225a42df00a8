"""The modules traced into ONNX: the image encoder, and the prompt decoder with SAM's ONNX interface.

The decoder reuses `segment_anything.utils.onnx.SamOnnxModel` (point and mask embedding without
control flow, mask post-processing, single-mask selection); on the robust path it adds one input,
the image robust feature that `RobustPredictor.set_image` computes once per image.
"""

from __future__ import annotations

import torch
from segment_anything.utils.onnx import SamOnnxModel
from torch import nn

from ..model.robustsam import RobustSam

ENCODER_INPUTS = ("image",)
SAM_ENCODER_OUTPUTS = ("image_embeddings",)
ROBUST_ENCODER_OUTPUTS = ("image_embeddings", "early_features", "robust_features")
PROMPT_INPUTS = ("point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")


def decoder_inputs(robust: bool) -> tuple[str, ...]:
    """Input names of the decoder: SAM's, with `robust_features` after the embedding on the robust path."""
    return ("image_embeddings", "robust_features", *PROMPT_INPUTS) if robust else ("image_embeddings", *PROMPT_INPUTS)


class EncoderOnnxModel(nn.Module):
    """Preprocessed image (1, 3, S, S) -> embedding (1, D, S/16, S/16) and, on the robust path, the
    early feature (1, C_vit, S/16, S/16) and image robust feature (1, D/8, S/4, S/4).

    Runs segment_anything's own encoder blocks (`exact=True`): they trace into plain ONNX ops,
    where the fused-attention forward's slab loops would be unrolled.
    """

    def __init__(self, model: RobustSam, robust: bool) -> None:
        super().__init__()
        self.model = model
        self.robust = robust

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedding, early = self.model.encode(image, exact=True)
        if not self.robust:
            return (embedding,)
        return embedding, early, self.model.mask_decoder.image_feature(embedding, early)


class RobustDecoderOnnxModel(SamOnnxModel):
    """SamOnnxModel on RobustSAM's robust path: the same inputs plus `robust_features` (1, D/8, 4h, 4w).

    Returns masks (1, C, H, W) at `orig_im_size`, iou_predictions (1, C), low_res_masks (1, C, 4h, 4w);
    C = 4 (SAM's token 0 then the three multimask tokens), or 1 with `return_single_mask`.
    """

    model: RobustSam

    def __init__(self, model: RobustSam, return_single_mask: bool) -> None:
        super().__init__(model, return_single_mask)

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        robust_features: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse_embedding = self._embed_points(point_coords, point_labels)
        dense_embedding = self._embed_masks(mask_input, has_mask_input)
        out = self.model.mask_decoder.decode(
            image_embeddings,
            self.model.prompt_encoder.get_dense_pe(),
            sparse_embedding,
            dense_embedding,
            robust_features,
            robust=True,
            return_features=False,
        )
        masks, scores = out.masks, out.iou
        if self.return_single_mask:
            masks, scores = self.select_masks(masks, scores, point_coords.shape[1])
        return self.mask_postprocessing(masks, orig_im_size), scores, masks


def decoder_onnx_model(model: RobustSam, robust: bool, return_single_mask: bool) -> nn.Module:
    """The decoder module to trace: SAM's own SamOnnxModel on SAM's path (RobustMaskDecoder keeps
    MaskDecoder.predict_masks), RobustDecoderOnnxModel on the robust path."""
    module = RobustDecoderOnnxModel(model, return_single_mask) if robust else SamOnnxModel(model, return_single_mask)
    return module.eval()

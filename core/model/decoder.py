"""SAM's mask decoder with RobustSAM's robust output token, AMFG blocks and AOTG (spec 3 and 4)."""

from __future__ import annotations

from typing import Optional

import torch
from segment_anything.modeling import MaskDecoder
from torch import nn

from .robust_head import ABLATIONS, ROBUST_MODULES, DecoderOutput, RobustHead, ablated_parameters

__all__ = ["ABLATIONS", "ROBUST_MODULES", "DecoderOutput", "RobustMaskDecoder", "ablated_parameters"]


class RobustMaskDecoder(RobustHead, MaskDecoder):
    """`segment_anything`'s MaskDecoder plus the RobustSAM modules, on two paths.

    Robust path: the robust output tokens, refined by AOTG, read masks from AMFG-filtered mask
    features plus the image robust feature. SAM path: SAM's own tokens and hypernetworks.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        encoder_dim: int,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.add_robust_modules(transformer_dim, encoder_dim, self.num_mask_tokens)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        image_feature: Optional[torch.Tensor] = None,
        robust: bool = True,
        return_features: bool = True,
    ) -> DecoderOutput:
        """One decoder pass for N prompts over B images (N a multiple of B, prompts grouped by image).

        image_embeddings: (B, D, h, w); image_pe: (1, D, h, w); sparse: (N, T, D); dense: (N, D, h, w);
        image_feature: (B, D/8, 4h, 4w), required on the robust path. With `return_features` the
        output carries the mask features X, on the SAM path too when the image feature is given
        (training's teacher needs them).
        """
        if robust and image_feature is None:
            raise ValueError("the robust path needs the image feature (see `image_feature`)")
        n = sparse_prompt_embeddings.shape[0]
        per_image = n // image_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.output_mask_tokens(robust)], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(n, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        src = torch.repeat_interleave(image_embeddings, per_image, dim=0)
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, n, dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        upscaled = self.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
        return self.read_outputs(iou_token_out, mask_tokens_out, upscaled, image_feature, robust, return_features)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        image_feature: Optional[torch.Tensor] = None,
        robust: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's decoder contract: (masks (N, C, h, w), iou (N, C)), C = 3 or 1."""
        out = self.decode(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            image_feature,
            robust,
            return_features=False,
        )
        return out.select(multimask_output)

"""RobustSAM2: `sam2`'s SAM2Base (Hiera trunk, FPN neck, prompt encoder, mask decoder, all as they are)
whose mask decoder also carries RobustSAM's modules, and whose encoder also returns the early feature."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam2_base import SAM2Base

from ..model.backbone import ImageEncoding
from ..model.decoder import DecoderOutput
from ..model.robust_head import RobustHead, read_masks

# sam2's SAM2Transforms normalisation of [0, 1] images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RobustSam2MaskDecoder(RobustHead, MaskDecoder):
    """`sam2`'s MaskDecoder plus RobustSAM's modules (`core.model.robust_head`) on two paths.

    Robust path: the robust output tokens take the mask tokens' place in the transformer; refined by
    AOTG, they read masks from the AMFG-filtered upscaled embedding (which already holds the neck's
    stride-4/8 features) plus the image feature. SAM 2 path: SAM 2's own decoder.
    """

    def __init__(self, *, early_dim: int, **decoder_args) -> None:
        super().__init__(**decoder_args)
        self.add_robust_modules(self.transformer_dim, early_dim, self.num_mask_tokens)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
        image_feature: Optional[torch.Tensor] = None,
        robust: bool = True,
        return_features: bool = True,
    ) -> DecoderOutput:
        """One decoder pass for N prompts over B images (N a multiple of B, prompts grouped by image).

        image_embeddings: (B, D, h, w); image_pe: (1, D, h, w); sparse: (N, T, D); dense: (N, D, h, w);
        high_res_features: (B, D/8, 4h, 4w) and (B, D/4, 2h, 2w); image_feature: (B, D/8, 4h, 4w),
        required on the robust path. On the SAM 2 path every step is `MaskDecoder.predict_masks`'s.
        """
        if robust and image_feature is None:
            raise ValueError("the robust path needs the image feature (see `image_feature`)")
        n = sparse_prompt_embeddings.shape[0]
        per_image = n // image_embeddings.shape[0]
        leading = [self.obj_score_token.weight] if self.pred_obj_scores else []
        output_tokens = torch.cat([*leading, self.iou_token.weight, self.output_mask_tokens(robust)], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings), dim=1)

        src = torch.repeat_interleave(image_embeddings, per_image, dim=0) + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, n, dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        first = len(leading)
        iou_token_out = hs[:, first, :]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens, :]

        upscaled = self._upscale(src.transpose(1, 2).view(b, c, h, w), high_res_features, per_image)
        features = refined = None
        if image_feature is not None and return_features:
            features = self.mask_features(upscaled, image_feature, robust)
        if robust:
            masks, refined = self.robust_masks(mask_tokens_out, upscaled, image_feature, features)
        else:
            masks = read_masks(self.sam_hypernetworks(mask_tokens_out), upscaled)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return DecoderOutput(masks, iou_pred, mask_tokens_out, features, refined)

    def _upscale(self, src: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor], per_image: int) -> torch.Tensor:
        """SAM 2's upscaling (N, D, h, w) -> (N, D/8, 4h, 4w), adding each prompt's image's stride-8 and
        stride-4 features after the first and second transposed convolutions."""
        if not self.use_high_res_features:
            return self.output_upscaling(src)
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        feat_s0, feat_s1 = (torch.repeat_interleave(feat, per_image, dim=0) for feat in high_res)
        return act2(deconv2(act1(norm1(deconv1(src) + feat_s1))) + feat_s0)

    def select(self, out: DecoderOutput, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM 2's output selection: tokens 1..3, or token 0 (falling back to the best of 1..3 when it is
        unstable, if the model was built with dynamic multimask, in eval mode). (N, C, h, w), (N, C)."""
        if multimask_output:
            return out.masks[:, 1:], out.iou[:, 1:]
        if self.dynamic_multimask_via_stability and not self.training:
            return self._dynamic_multimask_via_stability(out.masks, out.iou)
        return out.masks[:, :1], out.iou[:, :1]


class RobustSam2(SAM2Base):
    """SAM2Base whose `sam_mask_decoder` is a RobustSam2MaskDecoder. Built by `core.sam2.build_sam2_model`
    from the configuration files the `sam2` package ships; its state dict is SAM 2's plus the robust
    modules under `sam_mask_decoder.`."""

    sam_mask_decoder: RobustSam2MaskDecoder
    mask_threshold = 0.0
    model_type = "custom"

    @property
    def early_block(self) -> int:
        """Index of the trunk's first global-attention block, whose output is the early feature."""
        return min(self.image_encoder.trunk.global_att_blocks)

    def _build_sam_heads(self) -> None:
        super()._build_sam_heads()
        plain = self.sam_mask_decoder
        early_dim = self.image_encoder.trunk.blocks[self.early_block].dim_out
        self.sam_mask_decoder = RobustSam2MaskDecoder(
            early_dim=early_dim,
            transformer_dim=plain.transformer_dim,
            transformer=plain.transformer,
            num_multimask_outputs=plain.num_multimask_outputs,
            iou_head_depth=plain.iou_prediction_head.num_layers,
            iou_head_hidden_dim=plain.iou_prediction_head.layers[0].out_features,
            use_high_res_features=plain.use_high_res_features,
            iou_prediction_use_sigmoid=plain.iou_prediction_head.sigmoid_output,
            pred_obj_scores=plain.pred_obj_scores,
            pred_obj_scores_mlp=plain.pred_obj_scores and not isinstance(plain.pred_obj_score_head, torch.nn.Linear),
            use_multimask_token_for_obj_ptr=plain.use_multimask_token_for_obj_ptr,
            dynamic_multimask_via_stability=plain.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=plain.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=plain.dynamic_multimask_stability_thresh,
        )

    # The backbone interface (core.model.backbone), shared with SAM.

    @property
    def decoder(self) -> RobustSam2MaskDecoder:
        return self.sam_mask_decoder

    @property
    def decoder_prefix(self) -> str:
        """The state-dict prefix of the decoder."""
        return "sam_mask_decoder."

    @property
    def input_size(self) -> int:
        return self.image_size

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1] -> (B, 3, I, I) resized to the input size I and normalised as
        sam2's SAM2Transforms does (ImageNet mean and deviation)."""
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=(self.image_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (images - mean) / std

    def encode_images(self, inputs: torch.Tensor) -> ImageEncoding:
        return self.encode(inputs)

    def embed_prompts(self, points: Optional[torch.Tensor], labels: Optional[torch.Tensor], boxes: Optional[torch.Tensor],
                      masks: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (N, P, 2) + labels (N, P), boxes (N, 4) or (N, 2, 2) in the input frame, mask inputs
        (N, 1, 4h, 4w) -> (sparse (N, T, D), dense (N, D, h, w)). As SAM2ImagePredictor, a box is
        embedded as its two corners, labelled 2 and 3, ahead of the points."""
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=corners.device).expand(len(corners), -1)
            if points is None:
                points, labels = corners, corner_labels
            else:
                points, labels = torch.cat([corners, points], dim=1), torch.cat([corner_labels, labels], dim=1)
        return self.sam_prompt_encoder(points=None if points is None else (points, labels), boxes=None, masks=masks)

    def decode_prompts(self, encoding: ImageEncoding, sparse: torch.Tensor, dense: torch.Tensor,
                       image_feature: Optional[torch.Tensor] = None, robust: bool = True,
                       return_features: bool = True) -> DecoderOutput:
        """The decoder pass of N prompt embeddings over the images of `encoding` (RobustSam2MaskDecoder.decode)."""
        return self.sam_mask_decoder.decode(
            encoding.embedding, self.sam_prompt_encoder.get_dense_pe(), sparse, dense, encoding.high_res,
            image_feature, robust, return_features,
        )

    def encode(self, images: torch.Tensor) -> ImageEncoding:
        """Normalised images (B, 3, S, S) -> ImageEncoding, as SAM2ImagePredictor.set_image computes it:
        embedding, early feature, and the high-resolution features after conv_s0 / conv_s1."""
        captured: list[torch.Tensor] = []
        hook = self.image_encoder.trunk.blocks[self.early_block].register_forward_hook(
            lambda module, inputs, output: captured.append(output)
        )
        try:
            backbone_out = self.forward_image(images)
        finally:
            hook.remove()
        *high_res, embedding = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        if self.directly_add_no_mem_embed:
            embedding = embedding + self.no_mem_embed.view(1, -1, 1, 1)
        return ImageEncoding(embedding, captured[0].permute(0, 3, 1, 2), tuple(high_res))

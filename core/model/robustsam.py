"""RobustSAM: SAM's frozen encoders and decoder plus the robust modules, built from `segment_anything`."""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from .backbone import ImageEncoding
from .config import ModelConfig
from .decoder import DecoderOutput, RobustMaskDecoder
from .encoder import encoder_forward

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class RobustSam(Sam):
    """`segment_anything.Sam` whose decoder is a RobustMaskDecoder and whose encoder also
    returns the early feature (the output of the first global-attention block).

    `exact_encoder` (default False) selects the image encoder's forward: False runs
    `core.model.encoder`'s fused-attention forward (same function, relative error ~1e-6, about twice as
    fast on a CPU); True runs `segment_anything`'s own blocks, so that SAM's path reproduces
    `segment_anything.SamPredictor` bit for bit.
    """

    mask_decoder: RobustMaskDecoder

    def __init__(self, config: ModelConfig, model_type: str = "custom") -> None:
        size = config.image_size
        dim = config.prompt_embed_dim
        super().__init__(
            image_encoder=ImageEncoderViT(
                depth=config.encoder_depth,
                embed_dim=config.encoder_embed_dim,
                img_size=size,
                mlp_ratio=4,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                num_heads=config.encoder_num_heads,
                patch_size=config.patch_size,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=config.encoder_global_attn_indexes,
                window_size=config.window_size,
                out_chans=dim,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=dim,
                image_embedding_size=(config.embedding_size, config.embedding_size),
                input_image_size=(size, size),
                mask_in_chans=config.mask_in_chans,
            ),
            mask_decoder=RobustMaskDecoder(
                transformer_dim=dim,
                transformer=TwoWayTransformer(
                    depth=config.transformer_depth,
                    embedding_dim=dim,
                    mlp_dim=config.transformer_mlp_dim,
                    num_heads=config.transformer_num_heads,
                ),
                encoder_dim=config.encoder_embed_dim,
                iou_head_hidden_dim=config.iou_head_hidden_dim,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
        self.config = config
        self.model_type = model_type
        self.exact_encoder = False

    def encode(self, images: torch.Tensor, exact: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed images (B, 3, S, S) -> embedding (B, D, S/16, S/16), early feature (B, C_vit, S/16, S/16).

        `exact` overrides `exact_encoder` for this call.
        """
        if not (self.exact_encoder if exact is None else exact):
            return encoder_forward(self.image_encoder, images, self.config.early_block)
        encoder = self.image_encoder
        x = encoder.patch_embed(images)
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        early = None
        for index, block in enumerate(encoder.blocks):
            x = block(x)
            if index == self.config.early_block:
                early = x.permute(0, 3, 1, 2)
        embedding = encoder.neck(x.permute(0, 3, 1, 2))
        return embedding, early

    # The backbone interface (core.model.backbone), shared with SAM 2.

    @property
    def decoder(self) -> RobustMaskDecoder:
        return self.mask_decoder

    @property
    def decoder_prefix(self) -> str:
        """The state-dict prefix of the decoder."""
        return "mask_decoder."

    @property
    def input_size(self) -> int:
        return self.image_encoder.img_size

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) in [0, 1] -> normalised (B, 3, I, I) at the encoder's input size I."""
        if images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        return (images * 255 - self.pixel_mean) / self.pixel_std

    def encode_images(self, inputs: torch.Tensor) -> ImageEncoding:
        """Normalised images (B, 3, I, I) -> ImageEncoding (embedding and early feature)."""
        return ImageEncoding(*self.encode(inputs))

    def embed_prompts(self, points: Optional[torch.Tensor], labels: Optional[torch.Tensor], boxes: Optional[torch.Tensor],
                      masks: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (N, P, 2) + labels (N, P), boxes (N, 4) in the input frame, mask inputs (N, 1, 4h, 4w)
        -> (sparse (N, T, D), dense (N, D, h, w))."""
        return self.prompt_encoder(points=None if points is None else (points, labels), boxes=boxes, masks=masks)

    def decode_prompts(self, encoding: ImageEncoding, sparse: torch.Tensor, dense: torch.Tensor,
                       image_feature: Optional[torch.Tensor] = None, robust: bool = True,
                       return_features: bool = True) -> DecoderOutput:
        """RobustMaskDecoder.decode for N prompt embeddings over the images of `encoding`."""
        return self.mask_decoder.decode(encoding.embedding, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                        image_feature, robust, return_features)

    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool, robust: bool = True) -> list[dict[str, torch.Tensor]]:
        """`Sam.forward`'s contract (a list of image/prompt dicts) on the chosen path."""
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings, early = self.encode(images)
        outputs = []
        for record, embedding, early_one in zip(batched_input, embeddings, early):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs"))
            feature = self.mask_decoder.image_feature(embedding[None], early_one[None]) if robust else None
            low_res, iou = self.mask_decoder(
                embedding[None], self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output, feature, robust
            )
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res})
        return outputs


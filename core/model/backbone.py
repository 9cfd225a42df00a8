"""The backbone interface SAM (`RobustSam`) and SAM 2 (`core.sam2.RobustSam2`) both implement, so that
training, validation and RobustSAM's modules (`robust_head`) see one model:

    inputs = model.normalize_images(images)            # (B, 3, S, S) in [0, 1] -> the encoder's input
    encoding = model.encode_images(inputs)             # ImageEncoding
    sparse, dense = model.embed_prompts(points, labels, boxes)
    out = model.decode_prompts(encoding, sparse, dense, image_feature, robust)   # DecoderOutput
    model.decoder                                      # the mask decoder carrying RobustHead
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch


@dataclass
class ImageEncoding:
    """What an image encoder gives the decoder for B images.

    embedding: (B, D, h, w) at stride 16; early: (B, C_early, h, w), the output of the encoder's first
    global-attention block; high_res: SAM 2's stride-4 (B, D/8, 4h, 4w) and stride-8 (B, D/4, 2h, 2w)
    features (empty for SAM).
    """

    embedding: torch.Tensor
    early: torch.Tensor
    high_res: tuple[torch.Tensor, ...] = ()

    def select(self, index: Optional[torch.Tensor | slice]) -> "ImageEncoding":
        """The encodings of the images at `index` (e.g. each prompt's image); None keeps all."""
        if index is None:
            return self
        return ImageEncoding(self.embedding[index], self.early[index], tuple(f[index] for f in self.high_res))

    def float(self) -> "ImageEncoding":
        return ImageEncoding(self.embedding.float(), self.early.float(), tuple(f.float() for f in self.high_res))


class Backbone(Protocol):
    """A model with RobustSAM's modules on its decoder: `RobustSam` (SAM) or `core.sam2.RobustSam2`."""

    model_type: str

    @property
    def decoder(self) -> Any:
        """The mask decoder, carrying `core.model.robust_head.RobustHead`."""

    @property
    def decoder_prefix(self) -> str:
        """The decoder's state-dict prefix: 'mask_decoder.' or 'sam_mask_decoder.'."""

    @property
    def input_size(self) -> int:
        """The encoder's square input side I."""

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> the encoder's input (B, 3, I, I)."""

    def encode_images(self, inputs: torch.Tensor) -> ImageEncoding: ...

    def embed_prompts(self, points: Optional[torch.Tensor], labels: Optional[torch.Tensor], boxes: Optional[torch.Tensor],
                      masks: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode_prompts(self, encoding: ImageEncoding, sparse: torch.Tensor, dense: torch.Tensor,
                       image_feature: Optional[torch.Tensor] = None, robust: bool = True,
                       return_features: bool = True) -> Any:
        """A DecoderOutput for N prompts over the images of `encoding`."""

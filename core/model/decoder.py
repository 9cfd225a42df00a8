"""SAM's mask decoder with RobustSAM's robust output token, AMFG blocks and AOTG (spec 3 and 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from .modules import AMFGBlock, TokenRefiner, conv_tail, upsample_tail

# Parts of the robust path an ablation can remove (the paper's Table 7): the Fourier step of the
# AMFG blocks, AOTG's token refinement, and the robust output token (with its MLP) in favour of
# SAM's mask tokens and hypernetworks.
ABLATIONS = ("fourier", "aotg", "rot")

# Names of the modules RobustSAM adds under `mask_decoder.`, in released-checkpoint order.
ROBUST_MODULES = (
    "custom_robust_token",
    "robust_mlp",
    "fourier_mask_features",
    "fourier_first_layer_features",
    "fourier_last_layer_features",
    "custom_token_block",
)


@dataclass
class DecoderOutput:
    """Everything one decoder pass produces, for all four mask tokens.

    masks: (N, 4, h, w) low-resolution logits; iou: (N, 4);
    mask_tokens: (N, 4, D) transformer outputs at the mask-token positions;
    features: (N, D/8, h, w) mask features X (None on the SAM path unless asked);
    refined_tokens: (N, 4, D) tokens after AOTG (robust path only).
    """

    masks: torch.Tensor
    iou: torch.Tensor
    mask_tokens: torch.Tensor
    features: Optional[torch.Tensor] = None
    refined_tokens: Optional[torch.Tensor] = None

    def select(self, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's output selection: token 0 alone, or tokens 1..3."""
        index = slice(1, None) if multimask_output else slice(0, 1)
        return self.masks[:, index], self.iou[:, index]


class RobustMaskDecoder(MaskDecoder):
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
        mask_dim = transformer_dim // 8
        self.custom_robust_token = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.robust_mlp = MLP(transformer_dim, transformer_dim, mask_dim, 3)
        self.fourier_mask_features = AMFGBlock(mask_dim, "downsample_layer", conv_tail(mask_dim))
        self.fourier_first_layer_features = AMFGBlock(
            encoder_dim, "upsample_layer", upsample_tail(encoder_dim, transformer_dim, mask_dim)
        )
        self.fourier_last_layer_features = AMFGBlock(
            transformer_dim, "upsample_layer", upsample_tail(transformer_dim, transformer_dim, mask_dim)
        )
        self.custom_token_block = TokenRefiner(transformer_dim)
        self.removed: frozenset[str] = frozenset()

    def ablate(self, removed: Iterable[str]) -> None:
        """Runs the robust path without the parts named (see ABLATIONS); the weights stay as they are."""
        removed = frozenset(removed)
        unknown = removed - set(ABLATIONS)
        if unknown:
            raise ValueError(f"unknown ablation {', '.join(sorted(unknown))}; choose from {', '.join(ABLATIONS)}")
        self.removed = removed
        for block in (self.fourier_mask_features, self.fourier_first_layer_features, self.fourier_last_layer_features):
            block.use_fourier = "fourier" not in self.removed

    def image_feature(self, embedding: torch.Tensor, early: torch.Tensor, robust: bool = True) -> torch.Tensor:
        """Image-level feature R from the embedding (B, D, h, w) and early feature (B, C_vit, h, w).

        Returns (B, D/8, 4h, 4w); depends on the image only, so compute it once per image.
        """
        return self.fourier_first_layer_features(early, robust) + self.fourier_last_layer_features(embedding, robust)

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
        robust_token = robust and "rot" not in self.removed
        token_weight = self.custom_robust_token.weight if robust_token else self.mask_tokens.weight
        output_tokens = torch.cat([self.iou_token.weight, token_weight], dim=0)
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
        features = refined = None
        if image_feature is not None and return_features:
            features = self.mask_features(upscaled, image_feature, robust)
        if robust:
            refined = mask_tokens_out if "aotg" in self.removed else self.custom_token_block(mask_tokens_out)
            hyper_in = self.robust_mlp(refined) if robust_token else self._sam_hypernetworks(refined)
            if features is None and self.fourier_mask_features.runs_per_sample(upscaled):
                # The block goes prompt by prompt anyway: reading each prompt's masks at once means
                # the (N, D/8, 4h, 4w) features are never held together.
                masks = torch.cat(
                    [
                        _read_masks(hyper_in[k : k + 1], self.mask_features(prompt, image_feature[k // per_image, None]))
                        for k, prompt in enumerate(upscaled.split(1))
                    ]
                )
            else:
                if features is None:
                    features = self.mask_features(upscaled, image_feature)
                masks = _read_masks(hyper_in, features)
        else:
            masks = _read_masks(self._sam_hypernetworks(mask_tokens_out), upscaled)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return DecoderOutput(masks, iou_pred, mask_tokens_out, features, refined)

    def _sam_hypernetworks(self, tokens: torch.Tensor) -> torch.Tensor:
        """SAM's per-token hypernetwork MLPs: (N, 4, D) -> (N, 4, D/8)."""
        return torch.stack([mlp(tokens[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)

    def mask_features(self, upscaled: torch.Tensor, image_feature: torch.Tensor, robust: bool = True) -> torch.Tensor:
        """Mask features X of N prompts: the upscaled transformer output (N, D/8, 4h, 4w) through the
        mask-feature AMFG, plus the image feature (B, D/8, 4h, 4w) of each prompt's image."""
        mask_feature = self.fourier_mask_features(upscaled, robust)
        return (mask_feature.unflatten(0, (image_feature.shape[0], -1)) + image_feature[:, None]).flatten(0, 1)

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


def _read_masks(hyper_in: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mask logits (N, T, H, W) of T hypernetwork outputs (N, T, C) over features (N, C, H, W)."""
    n, c, h, w = features.shape
    # flatten, not view: it is a view for channels-last features as well.
    return (hyper_in @ features.flatten(2)).view(n, -1, h, w)


def ablated_parameters(decoder: RobustMaskDecoder) -> set[str]:
    """Names (under `mask_decoder.`) of the robust parameters the decoder's ablation leaves unused."""
    unused = []
    if "fourier" in decoder.removed:
        unused += [f"{name}.fgm_block" for name in ROBUST_MODULES if name.startswith("fourier_")]
    if "aotg" in decoder.removed:
        unused.append("custom_token_block")
    if "rot" in decoder.removed:
        unused += ["custom_robust_token", "robust_mlp"]
    return {
        f"mask_decoder.{name}"
        for name, _ in decoder.named_parameters()
        if any(name == prefix or name.startswith(prefix + ".") for prefix in unused)
    }

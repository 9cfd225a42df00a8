"""RobustSAM's modules written once for any mask decoder (SAM's, SAM 2's): the robust output token, its
MLP, AOTG and the three AMFG blocks, and the robust path that reads masks with them.

A backbone's decoder provides what this head needs (see `core.model.backbone`): the transformer's outputs
at the mask-token positions (N, 4, D) and the upscaled mask embedding (N, D/8, 4h, 4w); the image
encoder provides the embedding (B, D, h, w) and the early feature (B, C_early, h, w).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from .modules import AMFGBlock, TokenRefiner, conv_tail, upsample_tail

# Parts of the robust path an ablation can remove (the paper's Table 7): the Fourier step of the
# AMFG blocks, AOTG's token refinement, and the robust output token (with its MLP) in favour of
# SAM's mask tokens and hypernetworks.
ABLATIONS = ("fourier", "aotg", "rot")

# Names of the modules RobustSAM adds to the decoder, in released-checkpoint order.
ROBUST_MODULES = (
    "custom_robust_token",
    "robust_mlp",
    "fourier_mask_features",
    "fourier_first_layer_features",
    "fourier_last_layer_features",
    "custom_token_block",
)


class RobustHead:
    """Mixin for an `nn.Module` mask decoder with SAM's `mask_tokens` (4 tokens) and
    `output_hypernetworks_mlps`: `add_robust_modules` registers the modules under their released names
    on the decoder itself, so a decoder's state dict reads `custom_robust_token.weight` and so on."""

    mask_tokens: nn.Embedding
    output_hypernetworks_mlps: nn.ModuleList

    def add_robust_modules(self, transformer_dim: int, early_dim: int, num_mask_tokens: int) -> None:
        """The robust modules for a decoder of width D = `transformer_dim` whose early feature has
        `early_dim` channels."""
        mask_dim = transformer_dim // 8
        self.custom_robust_token = nn.Embedding(num_mask_tokens, transformer_dim)
        self.robust_mlp = MLP(transformer_dim, transformer_dim, mask_dim, 3)
        self.fourier_mask_features = AMFGBlock(mask_dim, "downsample_layer", conv_tail(mask_dim))
        self.fourier_first_layer_features = AMFGBlock(
            early_dim, "upsample_layer", upsample_tail(early_dim, transformer_dim, mask_dim)
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
        """Image-level feature R from the embedding (B, D, h, w) and early feature (B, C_early, h, w).

        Returns (B, D/8, 4h, 4w); depends on the image only, so compute it once per image.
        """
        return self.fourier_first_layer_features(early, robust) + self.fourier_last_layer_features(embedding, robust)

    def mask_features(self, upscaled: torch.Tensor, image_feature: torch.Tensor, robust: bool = True) -> torch.Tensor:
        """Mask features X of N prompts: the upscaled transformer output (N, D/8, 4h, 4w) through the
        mask-feature AMFG, plus the image feature (B, D/8, 4h, 4w) of each prompt's image."""
        mask_feature = self.fourier_mask_features(upscaled, robust)
        return (mask_feature.unflatten(0, (image_feature.shape[0], -1)) + image_feature[:, None]).flatten(0, 1)

    def output_mask_tokens(self, robust: bool) -> torch.Tensor:
        """The (4, D) token weights the transformer starts from: the robust tokens on the robust path."""
        return self.custom_robust_token.weight if robust and "rot" not in self.removed else self.mask_tokens.weight

    def sam_hypernetworks(self, tokens: torch.Tensor) -> torch.Tensor:
        """SAM's per-token hypernetwork MLPs: (N, 4, D) -> (N, 4, D/8)."""
        return torch.stack([mlp(tokens[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)

    def robust_masks(
        self,
        mask_tokens_out: torch.Tensor,
        upscaled: torch.Tensor,
        image_feature: torch.Tensor,
        features: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The robust path's masks (N, 4, 4h, 4w) and AOTG-refined tokens (N, 4, D) from the transformer's
        mask-token outputs (N, 4, D), the upscaled embedding (N, D/8, 4h, 4w) and the image feature
        (B, D/8, 4h, 4w); `features`, the mask features X when already computed."""
        refined = mask_tokens_out if "aotg" in self.removed else self.custom_token_block(mask_tokens_out)
        hyper_in = self.robust_mlp(refined) if "rot" not in self.removed else self.sam_hypernetworks(refined)
        if features is None and self.fourier_mask_features.runs_per_sample(upscaled):
            # The block goes prompt by prompt anyway: reading each prompt's masks at once means
            # the (N, D/8, 4h, 4w) features are never held together.
            per_image = len(upscaled) // len(image_feature)
            masks = torch.cat(
                [
                    read_masks(hyper_in[k : k + 1], self.mask_features(prompt, image_feature[k // per_image, None]))
                    for k, prompt in enumerate(upscaled.split(1))
                ]
            )
        else:
            if features is None:
                features = self.mask_features(upscaled, image_feature)
            masks = read_masks(hyper_in, features)
        return masks, refined


def read_masks(hyper_in: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mask logits (N, T, H, W) of T hypernetwork outputs (N, T, C) over features (N, C, H, W)."""
    n, c, h, w = features.shape
    # flatten, not view: it is a view for channels-last features as well.
    return (hyper_in @ features.flatten(2)).view(n, -1, h, w)


def ablated_parameters(decoder: nn.Module, prefix: str = "mask_decoder.") -> set[str]:
    """Names (under the decoder's state-dict `prefix`) of the robust parameters its ablation leaves unused."""
    unused = []
    if "fourier" in decoder.removed:
        unused += [f"{name}.fgm_block" for name in ROBUST_MODULES if name.startswith("fourier_")]
    if "aotg" in decoder.removed:
        unused.append("custom_token_block")
    if "rot" in decoder.removed:
        unused += ["custom_robust_token", "robust_mlp"]
    return {
        f"{prefix}{name}"
        for name, _ in decoder.named_parameters()
        if any(name == prefix or name.startswith(prefix + ".") for prefix in unused)
    }

"""Model configurations: the three released sizes and small ones for tests and CPU demos."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one RobustSAM size. The released sizes follow `segment_anything.build_sam`."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding, e.g. 64 for a 1024 input."""
        return self.image_size // self.patch_size

    @property
    def early_block(self) -> int:
        """Index of the first global-attention block, whose output is the early feature."""
        return self.encoder_global_attn_indexes[0]


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "vit_b": ModelConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": ModelConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": ModelConfig(1280, 32, 16, (7, 15, 23, 31)),
    # Small sizes share every code path with the released ones; they exist for tests and CPU demos.
    "vit_tiny": ModelConfig(
        encoder_embed_dim=96,
        encoder_depth=4,
        encoder_num_heads=3,
        encoder_global_attn_indexes=(1, 3),
        image_size=256,
        window_size=8,
        prompt_embed_dim=128,
        transformer_mlp_dim=512,
        transformer_num_heads=4,
        iou_head_hidden_dim=128,
    ),
    "vit_micro": ModelConfig(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        image_size=128,
        window_size=4,
        prompt_embed_dim=64,
        transformer_mlp_dim=128,
        transformer_num_heads=2,
        iou_head_hidden_dim=64,
        mask_in_chans=8,
    ),
}

# vit_micro at patch 8: a 16x16 embedding at 128 px, so thin parts and small objects keep their shape
# (the built-in model's size).
MODEL_CONFIGS["vit_micro_p8"] = replace(MODEL_CONFIGS["vit_micro"], patch_size=8, window_size=8)


def get_config(model_type: str) -> ModelConfig:
    """The configuration registered under `model_type`."""
    try:
        return MODEL_CONFIGS[model_type]
    except KeyError:
        raise ValueError(f"unknown model type {model_type!r}; known: {', '.join(MODEL_CONFIGS)}") from None

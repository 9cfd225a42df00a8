"""SAM 2 model types (`core.sam2` builds them): the configuration files the `sam2` package ships (composed with hydra, nothing
downloaded) and a micro size for tests and the built-in model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

# sam2's own post-processing for single-mask output (what `sam2.build_sam.build_sam2` applies by default):
# fall back to the best multimask output when the single mask is unstable.
_DYNAMIC_MULTIMASK = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)

# Hiera with 16 channels at stride 4 and 6 blocks, 64-channel neck, decoder and memory, 256 px input:
# about a million parameters, trainable from scratch on a CPU. Same classes and code paths as the released sizes.
_MICRO = (
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,3,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3,4]",
    "++model.image_encoder.trunk.window_spec=[8,4,8,4]",
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=128",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.out_dim=32",
    "++model.memory_encoder.position_encoding.num_pos_feats=32",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=32",
)


@dataclass(frozen=True)
class Sam2Config:
    """One SAM 2 size: a configuration file inside the `sam2` package plus hydra overrides."""

    config_file: str
    overrides: tuple[str, ...] = ()

    def compose(self, image_size: Optional[int] = None) -> Any:
        """The resolved hydra configuration (an OmegaConf node with `model`), optionally at another input size."""
        from hydra import compose
        from omegaconf import OmegaConf

        import sam2  # noqa: F401  (initialises hydra's search path on the sam2 package)

        overrides = list(_DYNAMIC_MULTIMASK + self.overrides)
        if image_size is not None:
            overrides.append(f"++model.image_size={image_size}")
        config = compose(config_name=self.config_file, overrides=overrides)
        OmegaConf.resolve(config)
        return config


def _released(version: str, size: str) -> Sam2Config:
    return Sam2Config(f"configs/{version}/{version}_hiera_{size}.yaml")


SAM2_CONFIGS: dict[str, Sam2Config] = {
    **{f"sam2.1_hiera_{size}": _released("sam2.1", size) for size in ("t", "s", "b+", "l")},
    **{f"sam2_hiera_{size}": _released("sam2", size) for size in ("t", "s", "b+", "l")},
    "sam2.1_hiera_micro": Sam2Config("configs/sam2.1/sam2.1_hiera_t.yaml", _MICRO),
}


def is_sam2_type(model_type: Optional[str]) -> bool:
    """Whether `model_type` names a SAM 2 size (sam2.1_hiera_* or sam2_hiera_*)."""
    return model_type in SAM2_CONFIGS


def get_sam2_config(model_type: str) -> Sam2Config:
    """The configuration registered under `model_type`."""
    try:
        return SAM2_CONFIGS[model_type]
    except KeyError:
        raise ValueError(f"unknown SAM 2 model type {model_type!r}; known: {', '.join(SAM2_CONFIGS)}") from None

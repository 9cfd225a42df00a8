"""The network: configurations, RobustSAM's modules on `segment_anything`, fast kernels, checkpoints, `build_robustsam`."""

from .build import build_robustsam
from .checkpoint import (
    CheckpointSummary,
    RobustModulesUninitialized,
    expected_shapes,
    infer_model_type,
    is_glesam_checkpoint,
    is_robust_key,
    is_sam2_state,
    read_state_dict,
    summarize_checkpoint,
)
from .config import MODEL_CONFIGS, ModelConfig, get_config
from .decoder import ABLATIONS, ROBUST_MODULES, DecoderOutput, RobustMaskDecoder
from .default_model import DEFAULT_CHECKPOINT, DEFAULT_NOTICE, default_checkpoint
from .robustsam import RobustSam
from .sam2_config import SAM2_CONFIGS, Sam2Config, get_sam2_config, is_sam2_type
from .synthetic_weights import synthetic_state_dict, synthetic_tensor

# Every --model-type: SAM (ViT) sizes, then SAM 2 / 2.1 sizes (those need the sam2 extra).
MODEL_TYPES = (*MODEL_CONFIGS, *SAM2_CONFIGS)

__all__ = [
    "ABLATIONS",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_NOTICE",
    "MODEL_CONFIGS",
    "MODEL_TYPES",
    "SAM2_CONFIGS",
    "ROBUST_MODULES",
    "CheckpointSummary",
    "DecoderOutput",
    "ModelConfig",
    "RobustMaskDecoder",
    "RobustModulesUninitialized",
    "RobustSam",
    "Sam2Config",
    "build_robustsam",
    "default_checkpoint",
    "expected_shapes",
    "get_config",
    "get_sam2_config",
    "infer_model_type",
    "is_glesam_checkpoint",
    "is_robust_key",
    "is_sam2_state",
    "is_sam2_type",
    "read_state_dict",
    "summarize_checkpoint",
    "synthetic_state_dict",
    "synthetic_tensor",
]

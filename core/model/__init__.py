"""The network: configurations, RobustSAM's modules on `segment_anything`, fast kernels, checkpoints, `build_robustsam`."""

from .build import build_robustsam
from .checkpoint import (
    CheckpointSummary,
    RobustModulesUninitialized,
    expected_shapes,
    infer_model_type,
    is_glesam_checkpoint,
    is_robust_key,
    read_state_dict,
    summarize_checkpoint,
)
from .config import MODEL_CONFIGS, ModelConfig, get_config
from .decoder import ABLATIONS, ROBUST_MODULES, DecoderOutput, RobustMaskDecoder
from .default_model import DEFAULT_CHECKPOINT, DEFAULT_NOTICE, default_checkpoint
from .robustsam import RobustSam
from .synthetic_weights import synthetic_state_dict, synthetic_tensor

__all__ = [
    "ABLATIONS",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_NOTICE",
    "MODEL_CONFIGS",
    "ROBUST_MODULES",
    "CheckpointSummary",
    "DecoderOutput",
    "ModelConfig",
    "RobustMaskDecoder",
    "RobustModulesUninitialized",
    "RobustSam",
    "build_robustsam",
    "default_checkpoint",
    "expected_shapes",
    "get_config",
    "infer_model_type",
    "is_glesam_checkpoint",
    "is_robust_key",
    "read_state_dict",
    "summarize_checkpoint",
    "synthetic_state_dict",
    "synthetic_tensor",
]

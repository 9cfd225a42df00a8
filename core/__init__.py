"""RobustSAM core: the model on `segment_anything`, checkpoints, and a SamPredictor-compatible predictor."""

from .build import build_robustsam
from .checkpoint import RobustModulesUninitialized, expected_shapes, infer_model_type, read_state_dict
from .config import MODEL_CONFIGS, ModelConfig, get_config
from .decoder import DecoderOutput, RobustMaskDecoder
from .device import resolve_device
from .errors import CheckpointError, InputError
from .model import RobustSam
from .predictor import RobustPredictor

__all__ = [
    "MODEL_CONFIGS",
    "CheckpointError",
    "DecoderOutput",
    "InputError",
    "ModelConfig",
    "RobustMaskDecoder",
    "RobustModulesUninitialized",
    "RobustPredictor",
    "RobustSam",
    "build_robustsam",
    "expected_shapes",
    "get_config",
    "infer_model_type",
    "read_state_dict",
    "resolve_device",
]

"""RobustSAM core: the model on `segment_anything` (`core.model`), running it (`core.inference`),
files and samples (`core.data`), metrics and the evaluation protocol (`core.evaluation`),
degradations (`core.degradations`), the file infrastructure under all of them (`core.io`) and the
generic multi-process launcher (`core.parallel`). Layers, lowest first, as tests/test_layers.py
checks them: errors/device, io, parallel, model/data, glesam/degradations/deploy, inference, evaluation."""

from .device import resolve_device
from .errors import CheckpointError, InputError
from .inference import RobustPredictor
from .model import (
    MODEL_CONFIGS,
    DecoderOutput,
    ModelConfig,
    RobustMaskDecoder,
    RobustModulesUninitialized,
    RobustSam,
    build_robustsam,
    expected_shapes,
    get_config,
    infer_model_type,
    read_state_dict,
)

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

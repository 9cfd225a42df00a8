"""SAM 2 / 2.1 as a second backbone (needs the `sam2` extra): RobustSAM's modules on `sam2`'s SAM2Base
(`RobustSam2`), released checkpoints read strictly (`load_sam2`), and a SAM2ImagePredictor-compatible
predictor (`Sam2Predictor`). `core.inference.open_predictor` opens SAM 2 checkpoints like any other."""

from .build import SAM2_DECODER_PREFIX, build_sam2_model, check_sam2_state, infer_sam2_type, is_sam2_robust_key, is_sam2_state, load_sam2
from ..model.sam2_config import SAM2_CONFIGS, Sam2Config, get_sam2_config, is_sam2_type
from .model import RobustSam2, RobustSam2MaskDecoder
from .predictor import Sam2Predictor, Sam2PromptTransform

__all__ = [
    "SAM2_CONFIGS",
    "SAM2_DECODER_PREFIX",
    "RobustSam2",
    "RobustSam2MaskDecoder",
    "Sam2Config",
    "Sam2Predictor",
    "Sam2PromptTransform",
    "build_sam2_model",
    "check_sam2_state",
    "get_sam2_config",
    "infer_sam2_type",
    "is_sam2_robust_key",
    "is_sam2_state",
    "is_sam2_type",
    "load_sam2",
]

"""Deployment: ONNX export of the encoder and prompt decoder, an onnxruntime predictor, safetensors checkpoints."""

from .onnx_export import DEFAULT_OPSET, MANIFEST, export_onnx, quantize_decoder
from .onnx_models import EncoderOnnxModel, RobustDecoderOnnxModel, decoder_onnx_model
from .onnx_predictor import OnnxModelCard, OnnxPredictor, read_manifest
from .weights import export_weights, read_weights_metadata, save_weights, split_metadata

__all__ = [
    "DEFAULT_OPSET",
    "MANIFEST",
    "EncoderOnnxModel",
    "OnnxModelCard",
    "OnnxPredictor",
    "RobustDecoderOnnxModel",
    "decoder_onnx_model",
    "export_onnx",
    "export_weights",
    "quantize_decoder",
    "read_manifest",
    "read_weights_metadata",
    "save_weights",
    "split_metadata",
]

"""`export_onnx`: a RobustSam as an image-encoder and a prompt-decoder ONNX model plus a manifest.

    export_onnx(build_robustsam(None, "robustsam_vit_b.pth"), "onnx/", robust=True, quantize=True)

Traced with torch.onnx's exporter (torch.export + onnxscript): the AMFG Fourier step, rfft2 and
irfft2, becomes ONNX DFT, which the TorchScript exporter cannot produce.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch

from ..errors import InputError
from ..model.robustsam import PIXEL_MEAN, PIXEL_STD, RobustSam
from .onnx_models import (
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ROBUST_ENCODER_OUTPUTS,
    SAM_ENCODER_OUTPUTS,
    EncoderOnnxModel,
    decoder_inputs,
    decoder_onnx_model,
)

MANIFEST = "robustsam_onnx.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
QUANTIZED_DECODER_FILE = "decoder_int8.onnx"
FORMAT = "robustsam-onnx"
# torch.onnx's exporter emits opset 18 natively; DFT (the Fourier step) exists from opset 17.
DEFAULT_OPSET = 18
MIN_OPSET = 17
EXTERNAL_DATA_BYTES = 1 << 30


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: tuple[str, ...],
            output_names: tuple[str, ...], opset: int, dynamic_shapes: Optional[tuple[Any, ...]] = None) -> None:
    # Grad mode on: FourierAmplitudeFilter's no-grad CPU shortcut branches on the data
    # (amplitude.min() > 0), which a traced graph cannot; its general branch is the same function.
    # The exporter reports each capture strategy it tries (and the graph of one that fails) on
    # stdout, stderr and through logging: progress of its own, not this program's output; a real
    # failure still raises.
    with torch.enable_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()), _quiet_logging():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    # Protobuf caps one file at 2 GiB: larger models (vit_l, vit_h encoders) keep their weights in PATH.data.
    external = sum(p.numel() * p.element_size() for p in module.parameters()) > EXTERNAL_DATA_BYTES
    program.save(str(path), external_data=external)


def _decoder_examples(model: RobustSam, robust: bool) -> tuple[torch.Tensor, ...]:
    """Example decoder inputs: 5 points (their count is a dynamic axis), a mask input, a non-square image."""
    config = model.config
    side = config.embedding_size
    generator = torch.Generator().manual_seed(0)
    examples = [torch.randn(1, config.prompt_embed_dim, side, side, generator=generator)]
    if robust:
        examples.append(torch.randn(1, config.prompt_embed_dim // 8, 4 * side, 4 * side, generator=generator))
    examples += [
        torch.randint(0, config.image_size, (1, 5, 2), generator=generator).float(),
        torch.tensor([[1.0, 0.0, 1.0, 2.0, 3.0]]),
        torch.randn(1, 1, 4 * side, 4 * side, generator=generator),
        torch.tensor([1.0]),
        torch.tensor([1.5 * config.image_size, config.image_size]),
    ]
    return tuple(examples)


def _describe(path: Path) -> dict[str, Any]:
    """File name, inputs and outputs (name, shape with named dynamic axes, element type) of an ONNX model."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def value(info: Any) -> dict[str, Any]:
        tensor = info.type.tensor_type
        shape = [dim.dim_param if dim.dim_param else dim.dim_value for dim in tensor.shape.dim]
        return {"name": info.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}

    return {"file": path.name, "inputs": [value(i) for i in graph.input], "outputs": [value(o) for o in graph.output]}


def quantize_decoder(source: Path, target: Path) -> None:
    """Dynamic int8 weights for the decoder, as segment-anything's exporter makes them (QUInt8, per tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_logging():
        quantize_dynamic(source, target, per_channel=False, reduce_range=False, weight_type=QuantType.QUInt8)


def export_onnx(
    model: RobustSam,
    output_dir: str | os.PathLike,
    *,
    robust: bool = True,
    opset: int = DEFAULT_OPSET,
    quantize: bool = False,
    return_single_mask: bool = False,
    amg_defaults: Optional[Mapping[str, int | float]] = None,
) -> Path:
    """Writes encoder.onnx, decoder.onnx (decoder_int8.onnx with `quantize`) and robustsam_onnx.json
    into `output_dir`, all at once at the end; returns the manifest's path.

    `robust` picks RobustSAM's path or SAM's path of the same weights. `amg_defaults` (the
    segment-everything settings a checkpoint carries) travel in the manifest.
    """
    if opset < MIN_OPSET:
        raise InputError(f"opset {opset}: the exporter needs opset {MIN_OPSET} or later (ONNX DFT for the Fourier step)")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: exists and is not a folder")
    model = model.eval()
    config = model.config
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        encoder_outputs = ROBUST_ENCODER_OUTPUTS if robust else SAM_ENCODER_OUTPUTS
        image = torch.randn(1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
        _export(EncoderOnnxModel(model, robust).eval(), (image,), staging / ENCODER_FILE, ENCODER_INPUTS, encoder_outputs, opset)

        inputs = decoder_inputs(robust)
        points = torch.export.Dim("num_points", min=1)
        dynamic = tuple({1: points} if name in ("point_coords", "point_labels") else None for name in inputs)
        decoder = decoder_onnx_model(model, robust, return_single_mask)
        _export(decoder, _decoder_examples(model, robust), staging / DECODER_FILE, inputs, DECODER_OUTPUTS, opset, dynamic)
        if quantize:
            quantize_decoder(staging / DECODER_FILE, staging / QUANTIZED_DECODER_FILE)

        manifest = {
            "format": FORMAT,
            "version": 1,
            "model_type": model.model_type,
            "mode": "robust" if robust else "sam",
            "opset": opset,
            "image_size": config.image_size,
            "embedding_size": config.embedding_size,
            "pixel_mean": list(PIXEL_MEAN),
            "pixel_std": list(PIXEL_STD),
            "mask_threshold": float(model.mask_threshold),
            "return_single_mask": return_single_mask,
            "point_labels": {"-1": "padding", "0": "background", "1": "foreground", "2": "box top-left", "3": "box bottom-right"},
            "encoder": _describe(staging / ENCODER_FILE),
            "decoder": _describe(staging / DECODER_FILE),
            "quantized_decoder": _describe(staging / QUANTIZED_DECODER_FILE) if quantize else None,
            "amg_defaults": dict(amg_defaults or {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        output_dir.mkdir(exist_ok=True)
        # The old manifest goes first and the new one last: a folder with a manifest holds the models it names.
        (output_dir / MANIFEST).unlink(missing_ok=True)
        if not quantize:
            (output_dir / QUANTIZED_DECODER_FILE).unlink(missing_ok=True)
        for item in sorted(staging.iterdir(), key=lambda item: item.name == MANIFEST):
            os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir / MANIFEST

"""`robustsam export`: one full checkpoint (.pth or .safetensors) from trained robust modules and SAM,
or from any checkpoint; or, with --onnx, an image-encoder and a prompt-decoder ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from core.io import require_output_dir, require_output_file
from core.errors import InputError
from core.model.checkpoint import expected_shapes, is_robust_key, read_state_dict, resolve_weights
from core.model import is_sam2_state, is_sam2_type
from core.model.default_model import read_amg_defaults

from .defaults import checkpoint_or_default, named_checkpoint
from .options import checkpoint_option, mode_option, model_type_option, sam_checkpoint_option

_PATH = click.Path(dir_okay=False, path_type=str)


def _merge(robust: str, sam: str, output: str) -> None:
    from core.deploy.weights import save_weights

    if is_sam2_state(read_state_dict(robust)):
        from core.sam2.build import read_sam2_weights

        model_type, state = read_sam2_weights(robust, sam)
        has_robust = any(is_robust_key(key) for key in state)
    else:
        weights = resolve_weights(robust, sam)
        model_type, has_robust = weights.model_type, weights.has_robust
        state = {key: weights.state_dict[key].float() for key in expected_shapes(model_type)} if has_robust else {}
    if not has_robust:
        raise InputError(f"{robust}: holds no robust-module weights")
    save_weights(state, output, model_type)
    click.echo(f"wrote {output} ({model_type}, {len(state)} tensors)")


def _convert(checkpoint: Optional[str], sam_checkpoint: Optional[str], model_type: Optional[str], output: str) -> None:
    from core.deploy.weights import save_weights

    path, sam_path = checkpoint_or_default(checkpoint), named_checkpoint(sam_checkpoint)
    if is_sam2_type(model_type) or is_sam2_state(read_state_dict(path)):
        from core.sam2.build import read_sam2_weights

        model_type, state = read_sam2_weights(path, sam_path, model_type)
    else:
        weights = resolve_weights(path, sam_path, model_type)
        model_type, state = weights.model_type, dict(weights.state_dict)
    save_weights(state, output, model_type)
    click.echo(f"wrote {output} ({model_type}, {len(state)} tensors)")


def _onnx(checkpoint: Optional[str], sam_checkpoint: Optional[str], model_type: Optional[str], onnx_dir: Path,
          mode: str, opset: int, quantize: bool, return_single_mask: bool) -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise click.UsageError(f"--onnx needs the onnx extra ({error.name} is missing): pip install 'robustsam[onnx]'") from None
    from core import build_robustsam
    from core.deploy import export_onnx

    path = checkpoint_or_default(checkpoint)
    if is_sam2_type(model_type) or is_sam2_state(read_state_dict(path)):
        raise InputError(f"{path}: a SAM 2 model; ONNX export covers SAM (ViT) models only (export SAM 2 as .safetensors or .pth)")
    model = build_robustsam(model_type, path, sam_checkpoint=named_checkpoint(sam_checkpoint))
    manifest = export_onnx(model, onnx_dir, robust=mode == "robust", opset=opset, quantize=quantize,
                           return_single_mask=return_single_mask, amg_defaults=read_amg_defaults(path))
    files = sorted(p.name for p in onnx_dir.iterdir() if p.suffix in (".onnx", ".json"))
    click.echo(f"wrote {onnx_dir}: {', '.join(files)} ({model.model_type}, {mode} path, opset {opset}); manifest {manifest.name}")


@click.command("export")
@click.option("--robust", "robust", type=_PATH, help="A robust-modules checkpoint of robustsam train (with --sam and -o).")
@click.option("--sam", "sam", type=_PATH, help="The SAM checkpoint it was trained on.")
@click.option("-o", "--output", type=_PATH,
              help="The full checkpoint to write: .safetensors (with model type and RobustSAM/SAM split as metadata) or .pth.")
@click.option("--onnx", "onnx_dir", type=click.Path(path_type=Path),
              help="Write encoder.onnx, decoder.onnx and robustsam_onnx.json into this folder.")
@checkpoint_option("The model to export or convert (default: the built-in model).", str)
@sam_checkpoint_option(path_type=str)
@model_type_option()
@mode_option("[--onnx] ")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True,
              help="[--onnx] ONNX opset (17 or later: the Fourier step needs DFT).")
@click.option("--quantize", is_flag=True, help="[--onnx] Also write decoder_int8.onnx (onnxruntime dynamic int8 weights).")
@click.option("--return-single-mask", is_flag=True,
              help="[--onnx] The decoder returns only the best mask, as segment-anything's exporter's flag.")
def export(robust: Optional[str], sam: Optional[str], output: Optional[str], onnx_dir: Optional[Path],
           checkpoint: Optional[str], sam_checkpoint: Optional[str], model_type: Optional[str], mode: str,
           opset: int, quantize: bool, return_single_mask: bool) -> None:
    """Write a full checkpoint, or ONNX models for deployment.

    \b
      robustsam export --robust runs/r/final.pth --sam sam_vit_b.pth -o robustsam_vit_b.safetensors
      robustsam export --checkpoint robustsam_vit_b.pth -o robustsam_vit_b.safetensors
      robustsam export --onnx onnx_vit_b/ --checkpoint robustsam_vit_b.pth --quantize
    """
    ctx = click.get_current_context()
    onnx_only = [name for name in ("mode", "opset", "quantize", "return_single_mask")
                 if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)]
    if onnx_dir is not None:
        if output is not None or robust is not None or sam is not None:
            raise click.UsageError("--onnx writes ONNX models; leave out -o, --robust and --sam (use --checkpoint)")
        _onnx(checkpoint, sam_checkpoint, model_type, require_output_dir(onnx_dir), mode, opset, quantize, return_single_mask)
        return
    if onnx_only:
        raise click.UsageError(f"--{onnx_only[0].replace('_', '-')} needs --onnx")
    if output is None:
        raise click.UsageError("give -o OUTPUT (a checkpoint) or --onnx FOLDER")
    require_output_file(output)
    if robust is not None or sam is not None:
        if robust is None or sam is None or checkpoint is not None or sam_checkpoint is not None:
            raise click.UsageError("merging needs both --robust and --sam (and no --checkpoint / --sam-checkpoint)")
        _merge(robust, sam, output)
        return
    _convert(checkpoint, sam_checkpoint, model_type, output)

"""`robustsam segment`: segment image folders from prompt files, or segment everything in them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click
from click.core import ParameterSource
from rich.table import Table

from core import resolve_device
from core.inference.loading import open_predictor
from core.inference.segment import ImageResult, SegmentSummary, prepare_run
from core.inference.loading import ModelChoice
from core.inference.segment_shards import SegmentLaunch, SegmentOptions, run_shard, segment_worker, shard_run
from core.parallel import STATE_DIR, merge

from .parallel import Parallel, launch, parallel_options, pop_parallel
from .outcome import allow_empty_option, print_error, report_empty, report_failures
from .defaults import apply_amg_defaults, checkpoint_or_default, console, named_checkpoint
from .options import GENERATOR_OPTIONS, device_option, generator_options, image_progress, model_options, precision_option

PROMPT_OPTIONS = ("prompt_from", "multimask", "all_masks", "prompt_batch")


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


def _summary_table(summary: SegmentSummary) -> Table:
    table = Table(title="robustsam segment")
    for column in ("images", "skipped (done)", "prompts", "masks", "no masks", "failures", "time"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.images),
        str(summary.skipped),
        str(summary.prompts),
        str(summary.masks),
        str(len(summary.empty)),
        str(len(summary.failures)),
        f"{summary.seconds:.1f} s",
    )
    return table


def _loosen_hint(options: dict[str, Any]) -> str:
    """The flags that make segment-everything keep more masks, with their values in this run."""
    return (f"lower --pred-iou-thresh (now {options['pred_iou_thresh']:g}) or --stability-score-thresh "
            f"(now {options['stability_score_thresh']:g}), or raise --points-per-side (now {options['points_per_side']})")


def _onnx_predictor(ctx: click.Context, onnx_dir: Optional[Path]) -> Any:
    """The OnnxPredictor of --onnx-dir; usage errors for options the ONNX backend does not take."""
    if onnx_dir is None:
        raise click.UsageError("--backend onnx needs --onnx-dir (a folder written by robustsam export --onnx)")
    for name in ("checkpoint", "sam_checkpoint", "model_type", "precision", "half"):
        if _given(ctx, name):
            raise click.UsageError(f"--{name.replace('_', '-')} is for --backend torch; the ONNX export fixes the model (fp32)")
    if _given(ctx, "device") and ctx.params["device"] not in ("auto", "cpu"):
        raise click.UsageError("--backend onnx runs on the CPU (onnxruntime); leave out --device")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise click.UsageError("--backend onnx needs onnxruntime: pip install 'robustsam[onnx]'") from None
    from core.deploy import OnnxPredictor

    predictor = OnnxPredictor(onnx_dir)
    if predictor.single_mask and (ctx.params["prompts_path"] is None or ctx.params["multimask"]):
        raise click.UsageError(f"{onnx_dir} was exported with --return-single-mask: it serves prompts without --multimask only")
    exported = "robust" if predictor.robust else "sam"
    if _given(ctx, "mode") and ctx.params["mode"] != exported:
        raise click.UsageError(f"--mode {ctx.params['mode']}: {onnx_dir} holds the {exported} path (export again with --mode)")
    return predictor


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--prompts", "prompts_path", type=click.Path(path_type=Path), help="The tool's prompt JSON or a COCO instances JSON; without it, segment everything.")
@click.option("--prompt-from", type=click.Choice(["box", "point"]), default="box", show_default=True, help="COCO prompts: the box, or one interior point of the mask.")
@click.option("--recursive", is_flag=True, help="Also search sub-folders (and ** in globs).")
@click.option("--format", "output_format", type=click.Choice(["png", "coco", "label"]), default="png", show_default=True, help="png: DIR/<stem>/<k>.png + metadata.csv; coco: DIR/coco_results.json; label: DIR/<stem>.png (16-bit).")
@click.option("--overlay", is_flag=True, help="Also write DIR/<stem>_overlay.png with masks, boxes and points drawn.")
@click.option("--multimask", is_flag=True, help="Predict three masks per prompt and keep the one with the best predicted IoU.")
@click.option("--all-masks", is_flag=True, help="With --multimask, keep all three (mask k = 3 * prompt + candidate).")
@click.option("--prompt-batch", type=click.IntRange(min=1), default=16, show_default=True, help="Prompts decoded at once.")
@model_options()
@device_option()
@precision_option()
@click.option("--half", is_flag=True, help="Same as --precision fp16 (CUDA only).")
@click.option("--overwrite", is_flag=True, help="Redo images whose outputs exist (default: skip them, resuming a run).")
@click.option("--strict", is_flag=True, help="An image where segment-everything finds no mask is an error (exit 1), not a warning.")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="torch: the PyTorch model; onnx: the models of robustsam export --onnx on onnxruntime (CPU, fp32).")
@click.option("--onnx-dir", type=click.Path(file_okay=False, path_type=Path), help="[--backend onnx] The folder robustsam export --onnx wrote.")
@allow_empty_option
@parallel_options
@generator_options()
@click.pass_context
def segment(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output_dir: Path,
    prompts_path: Optional[Path],
    prompt_from: str,
    recursive: bool,
    output_format: str,
    overlay: bool,
    multimask: bool,
    all_masks: bool,
    prompt_batch: int,
    checkpoint: Optional[Path],
    sam_checkpoint: Optional[Path],
    model_type: Optional[str],
    mode: str,
    device: str,
    precision: str,
    half: bool,
    overwrite: bool,
    strict: bool,
    backend: str,
    onnx_dir: Optional[Path],
    allow_empty: bool,
    **generator_options: Any,
) -> None:
    """Segment INPUTS (folders, globs or image files) from prompts, or everything in them.

    \b
      robustsam segment imgs/ --prompts boxes.json -o masks/ --checkpoint robustsam_vit_b.pth
      robustsam segment "imgs/*.jpg" -o masks/ --format coco --checkpoint robustsam_vit_b.pth
    """
    parallel = pop_parallel(generator_options)
    if parallel.nodes.world_size > 1 and backend != "torch":
        raise click.UsageError("--gpus/--nnodes run the torch backend")
    if prompts_path is not None:
        given = [name for name in GENERATOR_OPTIONS if _given(ctx, name)]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} is for segmenting everything; leave it out with --prompts")
    else:
        given = [name for name in PROMPT_OPTIONS if _given(ctx, name)]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} needs --prompts")
    if half:
        if _given(ctx, "precision") and precision != "fp16":
            raise click.UsageError(f"--half contradicts --precision {precision}")
        precision = "fp16"
    torch_device = resolve_device(device)
    if precision == "fp16" and torch_device.type != "cuda":
        raise click.UsageError(f"fp16 (--half) needs a CUDA device, not {torch_device}; use --precision bf16 or fp32")
    predictor = None
    if backend == "onnx":
        predictor = _onnx_predictor(ctx, onnx_dir)
        mode = "robust" if predictor.robust else "sam"
        model = None
        if prompts_path is None:
            stored = predictor.model.manifest.get("amg_defaults") or {}
            generator_options.update({key: value for key, value in stored.items() if key in generator_options and not _given(ctx, key)})
    else:
        if onnx_dir is not None:
            raise click.UsageError("--onnx-dir needs --backend onnx")
        checkpoint = checkpoint_or_default(checkpoint)
        sam_checkpoint = named_checkpoint(sam_checkpoint)
        predictor = open_predictor(checkpoint, sam_checkpoint=sam_checkpoint, model_type=model_type, robust=mode == "robust",
                                   precision=precision, device=torch_device)  # RobustSAM/SAM or GleSAM: the file says
        model = predictor.model
        if prompts_path is None:
            generator_options = apply_amg_defaults(ctx, checkpoint, generator_options)
    if parallel.launched:
        del model  # each worker builds its own on its device
        job = SegmentLaunch(ModelChoice(checkpoint, model_type, sam_checkpoint), torch_device.type == "cuda", list(inputs), output_dir,
                            SegmentOptions(prompts_path, prompt_from, recursive, output_format, overlay, multimask, all_masks,
                                           prompt_batch, mode == "robust", precision, generator_options, overwrite))
        _launch(ctx, parallel, job, allow_empty, strict)
        return
    run = prepare_run(
        model,
        inputs,
        output_dir,
        prompts=prompts_path,
        prompt_from=prompt_from,
        recursive=recursive,
        output_format=output_format,
        overlay=overlay,
        multimask=multimask,
        all_masks=all_masks,
        prompt_batch=prompt_batch,
        robust=mode == "robust",
        precision=precision,
        generator_options=generator_options,
        overwrite=overwrite,
        predictor=predictor,
    )
    if not run.jobs:
        report_empty(f"{', '.join(inputs)}: no images to segment", allow_empty)
        return
    errors = console(stderr=True)
    with image_progress(errors) as progress:
        mine = run if parallel.shard is None else shard_run(run, parallel.shard)
        task = progress.add_task("segment", total=len(mine.pending))

        def report(result: ImageResult) -> None:
            if result.error is not None:
                print_error(progress.console, result.error)
            elif result.masks == 0 and prompts_path is not None:
                progress.console.print(f"{'Error' if strict else 'Warning'}: {result.job.path}: no masks",
                                       markup=False, highlight=False, soft_wrap=True)
            elif result.masks == 0:
                progress.console.print(f"{'Error' if strict else 'Warning'}: {result.job.path}: segment-everything found no mask; "
                                       f"{_loosen_hint(generator_options)}", markup=False, highlight=False, soft_wrap=True)
            progress.advance(task)

        summary = run.run(report) if parallel.shard is None else run_shard(run, parallel.shard, output_dir, report)[0]
    console().print(_summary_table(summary))
    report_failures(ctx, summary.failures, len(run.pending))
    if strict and summary.empty:
        ctx.exit(1)


def _launch(ctx: click.Context, parallel: Parallel, job: SegmentLaunch, allow_empty: bool, strict: bool) -> None:
    """Runs the job in torchrun workers under one progress bar; a failed worker fails the command."""
    summary = merge(launch("segment", segment_worker, job, job.output_dir / STATE_DIR / "launch", parallel.nodes))
    if not summary.images + summary.skipped + len(summary.failures):
        report_empty(f"{', '.join(job.inputs)}: no images to segment", allow_empty)
        return
    for line in summary.failures:
        print_error(console(stderr=True), line)
    console().print(_summary_table(summary))
    report_failures(ctx, summary.failures, summary.images + len(summary.failures))
    if strict and summary.empty:
        ctx.exit(1)

"""`robustsam prior`: SAM / RobustSAM (or SAM 2 / RobustSAM2) masks of degraded images as restoration priors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import click
from rich.progress import Progress

from core.inference.batching import ImageBatch
from core.inference.loading import open_model
from core.device import resolve_device
from core.errors import InputError
from core.io import atomic_path, require_output_dir
from priors.data import collect_images
from priors.generate import PRIOR_GENERATOR_DEFAULTS, PriorGenerator
from core.inference.loading import ModelChoice
from core.parallel import merge
from priors.run import PriorLaunch, generate_priors, prior_part, prior_worker, sam_path_quiet

from .defaults import apply_amg_defaults, checkpoint_or_default, console, named_checkpoint
from .outcome import allow_empty_option, print_error, report_empty, report_failures
from .options import device_option, generator_options, image_batch_option, image_progress, model_options, resolve_image_batch, stack
from .parallel import launch, parallel_options, pop_parallel

MANIFEST = "prior.json"
# The generator settings prior takes from the command line (the others keep PRIOR_GENERATOR_DEFAULTS).
PRIOR_FLAGS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh")


def segmenter_options(command: Callable) -> Callable:
    """The options that choose the segmenter and its automatic-mask-generator settings."""
    return stack(model_options(), generator_options(PRIOR_FLAGS, PRIOR_GENERATOR_DEFAULTS, prefix=""))(command)


def generator_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The generator keyword arguments among the parsed segmenter options."""
    return {key: options[key] for key in PRIOR_FLAGS}


def build_generator(options: dict[str, Any], device: str) -> PriorGenerator:
    """A PriorGenerator from the parsed segmenter options (no --checkpoint: the built-in model)."""
    checkpoint = checkpoint_or_default(options["checkpoint"])
    sam_checkpoint = named_checkpoint(options["sam_checkpoint"])
    robust = options["mode"] == "robust"
    with sam_path_quiet(robust):
        model = open_model(checkpoint, sam_checkpoint=sam_checkpoint, model_type=options["model_type"], device=resolve_device(device))
    return PriorGenerator(model, robust=robust, **generator_settings(options))


def progress_bar() -> Progress:
    """The progress bar every restoration command shows on stderr."""
    return image_progress(console(stderr=True), transient=False)


def _check_manifest(output: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    path = output / MANIFEST
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{path}: unreadable; remove it or pass --overwrite") from None
        if old != manifest:
            changed = ", ".join(sorted(k for k in manifest if old.get(k) != manifest[k]))
            raise InputError(f"{path}: priors there were made with other settings ({changed}); use another folder or --overwrite")


def _write_manifest(output: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(output / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Folder for the prior files.")
@click.option("--task", type=click.Choice(["dehaze", "deblur"]), required=True,
              help="dehaze: the gray-coded map; deblur: the gray-coded map and its segment partition.")
@click.option("--glob", "pattern", default="**/*", show_default=True, help="Images to take from folder arguments.")
@click.option("--features", is_flag=True, help="Also write the image embedding and early feature (.features.npz).")
@device_option()
@image_batch_option()
@click.option("--overwrite", is_flag=True, help="Recompute priors that already exist.")
@click.option("--strict", is_flag=True, help="A prior with a single segment (no mask found) is an error (exit 2), not a warning.")
@allow_empty_option
@segmenter_options
@parallel_options
@click.pass_context
def prior(ctx: click.Context, images: tuple[Path, ...], output: Path, task: str, pattern: str, features: bool, device: str,
          image_batch: Optional[ImageBatch], overwrite: bool, strict: bool, allow_empty: bool, **options: Any) -> None:
    """Automatic masks of degraded IMAGES (files or folders) as restoration priors, written under -o.

    Per image NAME (a folder's images keep their relative paths): NAME.gray.png (uint8 gray-coded
    mask map), with --task deblur NAME.segments.npz ('masks': (M, H, W) uint8 {0, 1} segments tiling
    the image, 'gray_values': their gray values), with --features NAME.features.npz ('embedding',
    'early_feature'). Images whose files exist are skipped, so an interrupted run resumes.
    """
    parallel = pop_parallel(options)
    require_output_dir(output)
    image_batch = resolve_image_batch(image_batch, resolve_device(device))
    entries = collect_images(images, pattern)
    if not entries:
        report_empty(f"{', '.join(map(str, images))}: no images matching {pattern!r}", allow_empty)
        return
    options["checkpoint"] = checkpoint = checkpoint_or_default(options["checkpoint"])
    options.update(apply_amg_defaults(ctx, checkpoint, generator_settings(options)))
    manifest = {
        "task": task,
        "mode": options["mode"],
        "checkpoint": str(Path(checkpoint).resolve()),
        "sam_checkpoint": str(Path(options["sam_checkpoint"]).resolve()) if options["sam_checkpoint"] else None,
        "generator": {**PRIOR_GENERATOR_DEFAULTS, **generator_settings(options)},
    }
    _check_manifest(output, manifest, overwrite)
    generator = build_generator(options, device)
    _write_manifest(output, manifest)

    def warn_single(path: str, printer: Callable[..., None]) -> None:
        printer(f"Warning: {path}: one segment covers the image (no mask found); "
                f"lower --pred-iou-thresh (now {options['pred_iou_thresh']:g}) or --stability-score-thresh "
                f"(now {options['stability_score_thresh']:g})", markup=False, highlight=False)

    if parallel.launched:
        del generator  # each worker builds its own on its device
        with tempfile.TemporaryDirectory(prefix="robustsam-prior-") as state:  # no junk folder among the priors
            job = PriorLaunch(ModelChoice(checkpoint, options["model_type"], named_checkpoint(options["sam_checkpoint"])),
                              resolve_device(device).type == "cuda", options["mode"] == "robust", generator_settings(options),
                              list(images), pattern, output, task, features, overwrite, image_batch)
            summary = merge(launch("priors", prior_worker, job, Path(state), parallel.nodes))
        for failure in summary.failures:
            print_error(console(stderr=True), failure)
        for path in summary.single:
            warn_single(path, console(stderr=True).print)
    else:
        entries = prior_part(entries, parallel.shard)
        with progress_bar() as bar:
            job = bar.add_task("priors", total=len(entries))

            def report(path: Path, error: Optional[str], single: bool) -> None:
                if error is not None:
                    print_error(bar.console, error)
                if single:
                    warn_single(str(path), bar.console.print)
                bar.advance(job)

            summary = generate_priors(generator, entries, output, task, features, overwrite, report, image_batch)
    single, failures = summary.single, summary.failures
    single_note = f", {len(single)} a single segment" if single else ""
    click.echo(f"{summary.written} written, {summary.skipped} already there, {len(failures)} failed{single_note} -> {output}", err=True)
    if strict and single:
        raise InputError(f"{single[0]}: one segment covers the image (--strict)" + (f" (and {len(single) - 1} more)" if len(single) > 1 else ""))
    report_failures(ctx, failures, len(entries))

"""`robustsam restore train|eval|run`: restoration networks with a SAM / RobustSAM prior."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import click

from core.device import resolve_device
from core.errors import InputError, OnFailure, per_image
from core.io import atomic_path, require_output_dir, require_output_file, write_image
from priors.data import PairedImage, collect_images, find_pairs, prior_files
from priors.restorer import Restorer, load_restorer, save_restorer
from priors.training import TrainSettings, evaluate_restorer, mean_scores, restore_image, train_restorer

from . import defaults
from .options import device_option
from .outcome import FailedImages, allow_empty_option, report_empty, report_failures
from .prior import build_generator, progress_bar, segmenter_options

TASK = click.Choice(["dehaze", "deblur"])


def _block_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of block counts") from None
    if not counts or min(counts) < 0:
        raise click.BadParameter(f"{value!r}: block counts must be >= 0")
    return counts


def attach_priors(pairs: Sequence[PairedImage], priors: Optional[Path], options: dict[str, Any], device: str,
                  on_failure: OnFailure = None) -> list[PairedImage]:
    """Gives every pair its gray-coded map: the file `robustsam prior` wrote under `priors`, or one
    computed now with the segmenter options (kept in memory). Returns the pairs that have one: an
    unreadable image goes to `on_failure` (without it, InputError is raised)."""
    if priors is not None:
        for pair in pairs:
            pair.gray = prior_files(priors, pair.name)["gray"]
            if not pair.gray.is_file():
                raise InputError(f"{pair.gray}: no prior for {pair.name}; run `robustsam prior` on these images with -o {priors}")
        return list(pairs)
    if options["checkpoint"] is None and defaults.default_checkpoint() is None:
        raise click.UsageError("this network takes a SAM prior: give --priors (from `robustsam prior`) or --checkpoint to compute it")
    generator = build_generator(options, device)
    with progress_bar() as bar:
        for pair in bar.track(pairs, description="priors"):
            with per_image(on_failure):
                pair.gray = generator(pair.load()[0], partition=False).gray
    return [pair for pair in pairs if pair.gray is not None]


def _prior_source_options(command):
    command = segmenter_options(command)
    return click.option("--priors", type=click.Path(file_okay=False, exists=True, path_type=Path),
                        help="Folder written by `robustsam prior` (else priors are computed with --checkpoint).")(command)


def _load(network: Path, task: Optional[str], device: str) -> Restorer:
    restorer, _ = load_restorer(network, resolve_device(device))
    if task is not None and restorer.task != task:
        raise InputError(f"{network}: a {restorer.task} network, not {task}")
    return restorer


@click.group()
def restore() -> None:
    """Dehazing and deblurring networks fed with SAM / RobustSAM priors."""


@restore.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--task", type=TASK, required=True, help="dehaze: DATA holds hazy/ + clear/; deblur: blur/ + sharp/ (per scene).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Network file to write (.pt).")
@click.option("--no-prior", is_flag=True, help="Baseline: grayscale channel (dehaze) or plain NAFNet (deblur).")
@click.option("--steps", type=click.IntRange(1), default=200_000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--crop", type=click.IntRange(16), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True, help="Data loader processes.")
@click.option("--save-every", type=click.IntRange(1), default=None, help="Also write the network every N steps.")
@click.option("--width", type=click.IntRange(1), default=32, show_default=True)
@click.option("--levels", type=click.IntRange(1), default=4, show_default=True, help="dehaze U-Net poolings.")
@click.option("--enc-blocks", default="1,1,1,28", show_default=True, help="deblur NAFNet blocks per encoder level.")
@click.option("--middle-blocks", type=click.IntRange(0), default=1, show_default=True)
@click.option("--dec-blocks", default="1,1,1,1", show_default=True)
@click.option("--mask-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True)
@device_option()
@_prior_source_options
def train(data: Path, task: str, output: Path, no_prior: bool, steps: int, batch_size: int, crop: int, lr: float, seed: int,
          workers: int, save_every: Optional[int], width: int, levels: int, enc_blocks: str, middle_blocks: int, dec_blocks: str,
          mask_dropout: float, device: str, priors: Optional[Path], **options: Any) -> None:
    """Trains a restoration network on the image pairs under DATA and writes it to -o."""
    if task == "dehaze":
        network: dict[str, Any] = {"width": width, "levels": levels}
    else:
        network = {"width": width, "enc_blocks": _block_counts(enc_blocks), "middle_blocks": middle_blocks,
                   "dec_blocks": _block_counts(dec_blocks)}
        if len(network["enc_blocks"]) != len(network["dec_blocks"]):
            raise click.BadParameter("--enc-blocks and --dec-blocks need the same number of levels")
        if not no_prior:
            network["mask_dropout"] = mask_dropout
    require_output_file(output)
    pairs = find_pairs(data, task)
    if not no_prior:
        attach_priors(pairs, priors, options, device)
    restorer = Restorer(task, not no_prior, **network)
    settings = TrainSettings(steps=steps, batch_size=batch_size, crop=crop, lr=lr, seed=seed, workers=workers)

    with progress_bar() as bar:
        job = bar.add_task("training", total=steps)

        def on_step(step: int, loss: float) -> None:
            bar.update(job, advance=1, description=f"training  PSNR loss {loss:.2f}")
            if save_every and step % save_every == 0 and step < steps:
                save_restorer(output, restorer, steps=step)

        train_restorer(restorer, pairs, settings, resolve_device(device), on_step)
    save_restorer(output, restorer, steps=steps)
    click.echo(f"trained {task} network ({'with' if not no_prior else 'without'} prior, {len(pairs)} pairs, {steps} steps) -> {output}", err=True)


@restore.command("eval")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--network", required=True, type=click.Path(path_type=Path), help="Network from `robustsam restore train`.")
@click.option("--task", type=TASK, default=None, help="Checked against the network's task.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="JSON report: per-image and mean scores.")
@device_option()
@_prior_source_options
@click.pass_context
def evaluate(ctx: click.Context, data: Path, network: Path, task: Optional[str], output: Optional[Path], device: str,
             priors: Optional[Path], **options: Any) -> None:
    """PSNR / SSIM (RGB, uint8 scale, no border crop) of the restored pairs under DATA, per image and mean.
    An unreadable image is reported and left out (exit 1 at the end)."""
    if output is not None:
        require_output_file(output)
    restorer = _load(network, task, device)
    pairs = find_pairs(data, restorer.task)
    failed = FailedImages(defaults.console(stderr=True))
    usable = attach_priors(pairs, priors, options, device, failed) if restorer.use_prior else pairs
    with progress_bar() as bar:
        job = bar.add_task("evaluating", total=len(usable))
        rows = evaluate_restorer(restorer, usable, lambda row: bar.advance(job), failed)
    for row in rows:
        click.echo(f"{row['name']}\tPSNR {row['psnr']:.3f}\tSSIM {row['ssim']:.4f}\t(input {row['input_psnr']:.3f} / {row['input_ssim']:.4f})")
    if not rows:  # every image failed: no mean to report
        report_failures(ctx, failed.messages, len(pairs))
    mean = mean_scores(rows)
    click.echo(f"mean over {len(rows)}\tPSNR {mean['psnr']:.3f}\tSSIM {mean['ssim']:.4f}\t(input {mean['input_psnr']:.3f} / {mean['input_ssim']:.4f})")
    if output is not None:
        with atomic_path(output) as tmp:
            tmp.write_text(json.dumps({"network": str(network), "task": restorer.task, "mean": mean, "images": rows}, indent=2) + "\n")
    report_failures(ctx, failed.messages, len(pairs))


@restore.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--network", required=True, type=click.Path(path_type=Path), help="Network from `robustsam restore train`.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Folder for restored PNGs.")
@click.option("--task", type=TASK, default=None, help="Checked against the network's task.")
@click.option("--glob", "pattern", default="**/*", show_default=True, help="Images to take from folder arguments.")
@click.option("--overwrite", is_flag=True, help="Restore images whose output exists.")
@device_option()
@allow_empty_option
@_prior_source_options
@click.pass_context
def run(ctx: click.Context, images: tuple[Path, ...], network: Path, output: Path, task: Optional[str], pattern: str,
        overwrite: bool, device: str, allow_empty: bool, priors: Optional[Path], **options: Any) -> None:
    """Restores IMAGES (files or folders) to OUTPUT/NAME.png; existing outputs are skipped (resumable).
    An unreadable image is reported and skipped (exit 1 at the end)."""
    require_output_dir(output)
    restorer = _load(network, task, device)
    entries = collect_images(images, pattern)
    if not entries:
        report_empty(f"{', '.join(map(str, images))}: no images matching {pattern!r}", allow_empty)
        return
    targets = {name: output / Path(name).with_suffix(".png") for name, _ in entries}
    pending = [PairedImage(name, path) for name, path in entries if overwrite or not targets[name].is_file()]
    failed = FailedImages(defaults.console(stderr=True))
    usable = attach_priors(pending, priors, options, device, failed) if restorer.use_prior and pending else pending
    with progress_bar() as bar:
        for pair in bar.track(usable, description="restoring"):
            with per_image(failed):
                degraded, _, gray = pair.load()
                write_image(targets[pair.name], restore_image(restorer, degraded, gray))
    click.echo(f"{len(pending) - len(failed.messages)} restored, {len(targets) - len(pending)} already there, {len(failed.messages)} failed -> {output}", err=True)
    report_failures(ctx, failed.messages, len(entries))

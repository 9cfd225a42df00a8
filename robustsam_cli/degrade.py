"""`robustsam degrade`: writes the Robust-Seg layout (clear, masks, one folder per degradation)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, List, Optional, Sequence

import click
import torch
from rich.console import Console
from rich.table import Table

from core.degradations import DEFAULT_LEVEL, DEGRADATIONS, LQSEG_TYPES, PUBLISHED
from core.degradations.lqseg import LQSEG_RATES
from core.degradations.preview import MIXED, contact_sheet
from core.degradations.run import DegradeSummary, plan_degrade
from core.data.datasets import IMAGE_EXTENSIONS
from core.io import read_image, require_output_file, write_image
from core.device import resolve_device
from core.errors import InputError
from core.degradations.shards import DegradeLaunch, degrade_part, degrade_worker
from core.parallel import merge
from core.video import holds_videos, plan_video_degrade

from .outcome import allow_empty_option, print_error, report_empty, report_failures
from .options import device_option, image_progress
from .parallel import Parallel, launch, parallel_options, pop_parallel


def parse_types(spec: str) -> List[str]:
    """'all' (the 15 published types) or a comma-separated list of registered names, 'mixed', and
    GleSAM's LQ-1, LQ-2, LQ-3 ('lqseg': all three)."""
    if spec.strip() == "all":
        return list(PUBLISHED)
    names = [k.strip() for k in spec.split(",") if k.strip()]
    kinds = list(dict.fromkeys(kind for name in names for kind in (LQSEG_TYPES if name == "lqseg" else [name])))
    known = set(DEGRADATIONS) | {MIXED} | set(LQSEG_TYPES)
    for kind in kinds:
        if kind not in known:
            raise InputError(f"--types: unknown degradation {kind!r} (robustsam degrade --list shows them)")
    if not kinds:
        raise InputError("--types: no degradation given")
    return kinds


def _describe(kind: str) -> str:
    if kind == MIXED:
        return "LQSeg-style random second-order chain of blur, resize, noise and JPEG (levels 1-3)"
    if kind in LQSEG_TYPES:
        return f"GleSAM's LQSeg chain (Real-ESRGAN's second-order blur, resize, noise, JPEG) at rate {LQSEG_RATES[LQSEG_TYPES[kind]]}; ignores --level"
    doc = (DEGRADATIONS[kind].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _print_list(console: Console) -> None:
    table = Table(title="Degradations (level 3 = published parameters)")
    table.add_column("name", style="bold")
    table.add_column("published")
    table.add_column("what it does")
    for kind in list(DEGRADATIONS) + [MIXED, *LQSEG_TYPES]:
        table.add_row(kind, "yes" if kind in PUBLISHED else "", _describe(kind))
    console.print(table)


def _summary_table(summary: DegradeSummary, output: Path, unit: str = "images") -> Table:
    table = Table(title=f"robustsam degrade -> {output}")
    for column in ("folder", "written", "kept", "seconds", f"{unit}/s"):
        table.add_column(column, justify="left" if column == "folder" else "right")
    for folder in summary.folders:
        seconds, written = summary.seconds[folder], summary.written[folder]
        rate = f"{written / seconds:.1f}" if seconds > 0 and written else "-"
        table.add_row(folder, str(written), str(summary.kept[folder]), f"{seconds:.1f}", rate)
    return table


@click.command("degrade")
@click.argument("src", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output folder (or the sheet with --preview).")
@click.option("--masks", "masks_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of masks per image: <stem>.npy, <stem>.png (labels or binary) or <stem>/*.png; "
                   "for videos, <video>/00000.png ... per frame (DAVIS's Annotations/480p).")
@click.option("--video", "as_video", is_flag=True,
              help="SRC is a video even if it is a single folder of frames (video files and folders of frame "
                   "folders are recognised without it).")
@click.option("--types", "types_spec", default="all", show_default=True,
              help="'all' (the 15 published types) or a comma-separated list; 'mixed' is the LQSeg-style chain; "
                   "'lqseg' writes GleSAM's LQ-1, LQ-2, LQ-3 (their level is in the name).")
@click.option("--level", type=click.IntRange(1, 5), default=DEFAULT_LEVEL, show_default=True,
              help="Severity 1-5; 3 is the published setting.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Each file's generator is seeded from (seed, type, file name).")
@device_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images degraded together (same-size images share a batch).")
@click.option("--overwrite", is_flag=True, help="Rewrite outputs that exist (by default they are kept: runs resume).")
@click.option("--tile", type=int, default=None,
              help="Large images: degrade SIZE x SIZE pixels at a time (a multiple of 16) into <type>/<stem>.tif, tiled TIFF.")
@click.option("--list", "list_types", is_flag=True, help="List the degradations and exit.")
@allow_empty_option
@click.option("--preview", type=click.Path(path_type=Path), default=None,
              help="Write a labelled contact sheet of this image under every type to -o instead.")
@parallel_options
@click.pass_context
def degrade(
    ctx: click.Context,
    src: Optional[Path],
    output: Optional[Path],
    masks_dir: Optional[Path],
    as_video: bool,
    types_spec: str,
    level: int,
    seed: int,
    device: str,
    batch_size: int,
    overwrite: bool,
    tile: Optional[int],
    list_types: bool,
    allow_empty: bool,
    preview: Optional[Path],
    **parallel_params: Any,
) -> None:
    """Degrade the clear images in SRC into the Robust-Seg layout under OUTPUT:
    OUTPUT/clear, OUTPUT/masks/*.npy (bool (M, H, W)) and OUTPUT/<type>/, same file names.

    Videos (MP4, MOV, AVI, WebM, MKV, folders of numbered frames) are degraded consistently over
    time into OUTPUT/clear/<video>/, OUTPUT/masks/<video>/ and OUTPUT/<type>/<video>/, one file per frame."""
    console = Console(stderr=True)
    parallel = pop_parallel(parallel_params)
    if list_types:
        _print_list(Console())
        return
    if output is None:
        raise click.UsageError("-o/--output is required")
    kinds = parse_types(types_spec)
    try:
        torch_device = resolve_device(device)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"--device: {error}".splitlines()[0]) from None
    if preview is not None:
        if parallel.launched or parallel.shard is not None:
            raise click.UsageError("--gpus/--nnodes/--shard split degrading a folder, not --preview")
        require_output_file(output)
        sheet_kinds = kinds if types_spec.strip() != "all" else list(PUBLISHED) + [MIXED]
        sheet = contact_sheet(
            read_image(preview), sheet_kinds, name=preview.name, level=level, seed=seed, device=torch_device
        )
        write_image(output, sheet)
        console.print(f"wrote {output} ({len(sheet_kinds) + 1} tiles)")
        return
    if src is None:
        raise click.UsageError("SRC is required (or --preview IMAGE, or --list)")
    if as_video or holds_videos(src):
        if tile:
            raise click.UsageError("--tile degrades large images, not videos")
        _degrade_videos(src, output, kinds, parallel, torch_device, console, masks_dir=masks_dir, level=level,
                        seed=seed, overwrite=overwrite)
        return
    options = dict(masks_dir=masks_dir, level=level, seed=seed, batch_size=batch_size, overwrite=overwrite, tile=tile)
    run = plan_degrade(src, output, kinds, device=torch_device, **options)
    if not run.jobs and not run.failures:
        report_empty(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)})", allow_empty)
        return
    if parallel.launched:
        with tempfile.TemporaryDirectory(prefix="robustsam-degrade-") as state:  # no junk folder in the dataset
            job = DegradeLaunch(src, output, kinds, cuda=torch_device.type == "cuda", **options)
            summary = merge(launch("degrade", degrade_worker, job, Path(state), parallel.nodes))
        for failure in summary.failures:
            print_error(console, failure)
        Console().print(_summary_table(summary, output))
        report_failures(ctx, summary.failures, len(run.jobs) + len(run.failures))
        return
    run = degrade_part(run, parallel.shard)
    for failure in run.failures:
        print_error(console, failure)
    with image_progress(console, transient=False) as progress:
        task = progress.add_task(f"degrading on {torch_device}", total=len(run.jobs))

        def advance(images: int, failures: Sequence[str]) -> None:
            for failure in failures:
                print_error(progress.console, failure)
            progress.advance(task, images)

        summary = run.run(advance)
    Console().print(_summary_table(summary, output))
    report_failures(ctx, summary.failures, len(run.jobs) + len(run.failures))


def _degrade_videos(src: Path, output: Path, kinds: List[str], parallel: Parallel, device: torch.device, console: Console,
                    **options: Any) -> None:
    """Every video of SRC (or this shard's), every frame checked before any is written."""
    if parallel.launched:
        raise click.UsageError("--gpus/--nnodes split folders of images; split videos with --shard K/N")
    run = plan_video_degrade(src, output, kinds, device=device, **options).part(parallel.shard)
    with image_progress(console, transient=False, unit="frames") as progress:
        task = progress.add_task(f"degrading {len(run.jobs)} videos on {device}", total=run.num_frames)
        summary = run.run(lambda frames: progress.advance(task, frames))
    Console().print(_summary_table(summary, output, unit="frames"))

"""`robustsam degrade`: writes the Robust-Seg layout (clear, masks, one folder per degradation)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from core.degradations import DEFAULT_LEVEL, DEGRADATIONS, PUBLISHED
from core.degradations.dataset import copy_clear, file_seed, find_mask, list_images, read_masks, save_image, save_masks
from core.degradations.preview import CLEAR, MIXED, apply, contact_sheet, to_tensor, to_uint8
from core.device import resolve_device
from core.errors import InputError
from core.data.io import read_image, write_image

MASKS = "masks"


def parse_types(spec: str) -> List[str]:
    """'all' (the 15 published types) or a comma-separated list of registered names or 'mixed'."""
    if spec.strip() == "all":
        return list(PUBLISHED)
    kinds = list(dict.fromkeys(k.strip() for k in spec.split(",") if k.strip()))
    known = set(DEGRADATIONS) | {MIXED}
    for kind in kinds:
        if kind not in known:
            raise InputError(f"--types: unknown degradation {kind!r} (robustsam degrade --list shows them)")
    if not kinds:
        raise InputError("--types: no degradation given")
    return kinds


def _describe(kind: str) -> str:
    if kind == MIXED:
        return "LQSeg-style random second-order chain of blur, resize, noise and JPEG (levels 1-3)"
    doc = (DEGRADATIONS[kind].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _print_list(console: Console) -> None:
    table = Table(title="Degradations (level 3 = published parameters)")
    table.add_column("name", style="bold")
    table.add_column("published")
    table.add_column("what it does")
    for kind in list(DEGRADATIONS) + [MIXED]:
        table.add_row(kind, "yes" if kind in PUBLISHED else "", _describe(kind))
    console.print(table)


class _Tally:
    """Per-output-folder counts and time, for the summary table."""

    def __init__(self) -> None:
        self.written: Dict[str, int] = defaultdict(int)
        self.kept: Dict[str, int] = defaultdict(int)
        self.seconds: Dict[str, float] = defaultdict(float)

    def table(self, folders: Sequence[str], output: Path) -> Table:
        table = Table(title=f"robustsam degrade -> {output}")
        for column in ("folder", "written", "kept", "seconds", "images/s"):
            table.add_column(column, justify="left" if column == "folder" else "right")
        for folder in folders:
            seconds = self.seconds[folder]
            rate = f"{self.written[folder] / seconds:.1f}" if seconds > 0 and self.written[folder] else "-"
            table.add_row(folder, str(self.written[folder]), str(self.kept[folder]), f"{seconds:.1f}", rate)
        return table


def _degrade_chunk(
    chunk: Sequence[Path],
    kinds: Sequence[str],
    output: Path,
    masks_dir: Optional[Path],
    level: int,
    seed: int,
    device: torch.device,
    overwrite: bool,
    tally: _Tally,
) -> None:
    """Writes every missing output of a few images; images of one size are degraded as one batch."""

    def missing(folder: str, name: str) -> bool:
        return overwrite or not (output / folder / name).exists()

    pending = {path: [k for k in kinds if missing(k, path.name)] for path in chunk}
    for path in chunk:
        for kind in kinds:
            if kind not in pending[path]:
                tally.kept[kind] += 1
    images = {}
    for path in chunk:
        mask_name = f"{path.stem}.npy"
        wants_masks = masks_dir is not None and missing(MASKS, mask_name)
        if pending[path] or wants_masks:
            images[path] = read_image(path)
        start = time.perf_counter()
        if missing(CLEAR, path.name):
            copy_clear(path, output / CLEAR / path.name)
            tally.written[CLEAR] += 1
        else:
            tally.kept[CLEAR] += 1
        tally.seconds[CLEAR] += time.perf_counter() - start
        if masks_dir is not None:
            start = time.perf_counter()
            if wants_masks:
                height, width = images[path].shape[:2]
                save_masks(output / MASKS / mask_name, read_masks(find_mask(masks_dir, path), height, width))
                tally.written[MASKS] += 1
            else:
                tally.kept[MASKS] += 1
            tally.seconds[MASKS] += time.perf_counter() - start

    batches: Dict[tuple, torch.Tensor] = {}  # one float batch per group of images, for every type
    buffers: Dict[torch.Size, torch.Tensor] = {}  # one output buffer per batch shape, for every type
    for kind in kinds:
        by_size: Dict[tuple, List[Path]] = defaultdict(list)
        for path in chunk:
            if kind in pending[path]:
                by_size[images[path].shape].append(path)
        for paths in by_size.values():
            start = time.perf_counter()
            group = tuple(paths)
            if group not in batches:
                batches[group] = torch.cat([to_tensor(images[p], device) for p in paths])
            batch = batches[group]
            if batch.shape not in buffers:
                buffers[batch.shape] = torch.empty_like(batch)
            out = buffers[batch.shape]
            degraded = to_uint8(apply(batch, kind, level, [file_seed(seed, kind, p.name) for p in paths], out=out))
            for path, picture in zip(paths, degraded):
                save_image(output / kind / path.name, picture)
            tally.written[kind] += len(paths)
            tally.seconds[kind] += time.perf_counter() - start


@click.command("degrade")
@click.argument("src", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output folder (or the sheet with --preview).")
@click.option("--masks", "masks_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of masks per image: <stem>.npy, <stem>.png (labels or binary) or <stem>/*.png.")
@click.option("--types", "types_spec", default="all", show_default=True,
              help="'all' (the 15 published types) or a comma-separated list; 'mixed' is the LQSeg-style chain.")
@click.option("--level", type=click.IntRange(1, 5), default=DEFAULT_LEVEL, show_default=True,
              help="Severity 1-5; 3 is the published setting.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Each file's generator is seeded from (seed, type, file name).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images degraded together (same-size images share a batch).")
@click.option("--overwrite", is_flag=True, help="Rewrite outputs that exist (by default they are kept: runs resume).")
@click.option("--list", "list_types", is_flag=True, help="List the degradations and exit.")
@click.option("--preview", type=click.Path(path_type=Path), default=None,
              help="Write a labelled contact sheet of this image under every type to -o instead.")
def degrade(
    src: Optional[Path],
    output: Optional[Path],
    masks_dir: Optional[Path],
    types_spec: str,
    level: int,
    seed: int,
    device: str,
    batch_size: int,
    overwrite: bool,
    list_types: bool,
    preview: Optional[Path],
) -> None:
    """Degrade the clear images in SRC into the Robust-Seg layout under OUTPUT:
    OUTPUT/clear, OUTPUT/masks/*.npy (bool (M, H, W)) and OUTPUT/<type>/, same file names."""
    console = Console(stderr=True)
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
        sheet_kinds = kinds if types_spec.strip() != "all" else list(PUBLISHED) + [MIXED]
        sheet = contact_sheet(
            read_image(preview), sheet_kinds, name=preview.name, level=level, seed=seed, device=torch_device
        )
        write_image(output, sheet)
        console.print(f"wrote {output} ({len(sheet_kinds) + 1} tiles)")
        return
    if src is None:
        raise click.UsageError("SRC is required (or --preview IMAGE, or --list)")
    paths = list_images(src)
    if masks_dir is not None:
        for path in paths:  # fail before writing anything when a mask is missing
            find_mask(masks_dir, path)
    tally = _Tally()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"degrading on {torch_device}", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            _degrade_chunk(chunk, kinds, output, masks_dir, level, seed, torch_device, overwrite, tally)
            progress.advance(task, len(chunk))
    folders = [CLEAR] + ([MASKS] if masks_dir is not None else []) + kinds
    Console().print(tally.table(folders, output))

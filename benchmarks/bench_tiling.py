"""Tiled segmentation (`segment --tile`, core.tiling) against untiled, on generated scenes (built-in model).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 benchmarks/bench_tiling.py

1. A 4096 x 4096 scene, segment-everything: untiled (the whole image decoded, resized to the model's
   input) vs `--tile 1024 --tile-overlap 128`: seconds, peak RSS, tiles/s.
2. Peak RSS of `--tile 1024 --format label` with three box prompts on 4K, 10K and 20K tiled TIFFs
   (each run in its own process; the baseline is the same run on a 1K scene).
3. Small-object recall: 12 discs of radius 10 to 16 px on a 512 x 512 scene, segment-everything
   untiled (the built-in model sees it at 128 px: the discs shrink to radius 2.5-4 px, under its
   8-px patches) vs `--tile 256 --tile-overlap 32` (seen at half size): the share of discs some mask
   covers at IoU >= 0.5.
Each measured command runs in a fresh process, which prints its own peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source tree, not an installed copy

from core.data.large_scenes import Disc, write_large_scene  # noqa: E402

RUN_AND_REPORT_PEAK = """
import resource, sys
from robustsam_cli.main import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
finally:
    print("peak_rss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""
ROOT = Path(__file__).resolve().parents[1]


def run_segment(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `robustsam segment ARGS` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT_PEAK, "segment", *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    peak = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("peak_rss_kib")][0]
    return seconds, peak / 1024


def spread_discs(size: int, count: int, radii: tuple[int, int], seed: int) -> list[Disc]:
    """`count` discs with radii in `radii`, at least one diameter apart, inside a size x size image."""
    rng = np.random.default_rng(seed)
    discs: list[Disc] = []
    while len(discs) < count:
        r = int(rng.integers(*radii))
        cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
        if all((cx - x) ** 2 + (cy - y) ** 2 > (r + s + 2 * max(r, s)) ** 2 for x, y, s in discs):
            discs.append((cx, cy, r))
    return discs


def recall(masks: list[np.ndarray], discs: list[Disc], size: int) -> float:
    """Share of discs matched by some mask at IoU >= 0.5."""
    yy, xx = np.mgrid[:size, :size]
    found = 0
    for cx, cy, r in discs:
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        found += any((m & disc).sum() / (m | disc).sum() >= 0.5 for m in masks)
    return found / len(discs)


def masks_of(folder: Path) -> list[np.ndarray]:
    import imageio.v3 as iio

    return [iio.imread(path) > 0 for path in sorted(folder.glob("*.png"))]


def everything_4k(work: Path, points: int) -> None:
    size = 4096
    write_large_scene(work / "s4k.tif", size, size, spread_discs(size, 24, (40, 120), seed=1))
    common = ["--points-per-side", str(points), "--overwrite", "--format", "coco"]
    untiled = run_segment([str(work / "s4k.tif"), "-o", str(work / "untiled"), *common])
    tiled = run_segment([str(work / "s4k.tif"), "-o", str(work / "tiled"), "--tile", "1024", "--tile-overlap", "128", *common])
    tiles = 5 * 5  # 4096 at tile 1024, stride 896: starts 0, 896, 1792, 2688 and 3072
    print(f"4K segment-everything (points per side {points}): untiled {untiled[0]:.1f} s, peak {untiled[1]:.0f} MB; "
          f"tiled 1024/128 {tiled[0]:.1f} s ({tiled[0] / untiled[0]:.2f}x), peak {tiled[1]:.0f} MB ({tiled[1] / untiled[1]:.2f}x), "
          f"{tiles / tiled[0]:.2f} tiles/s including start-up")


def memory_by_size(work: Path) -> None:
    rows = []
    for size in (1000, 4096, 10_000, 20_000):
        discs = [(300, 300, 60), (size - 400, size - 300, 50), (size // 2, size // 2, 70)]
        name = f"m{size}.tif"
        write_large_scene(work / name, size, size, discs)
        prompts = {name: [{"box": [cx - r - 5, cy - r - 5, cx + r + 5, cy + r + 5]} for cx, cy, r in discs]}
        (work / f"{name}.json").write_text(json.dumps(prompts))
        seconds, peak = run_segment([str(work / name), "--prompts", str(work / f"{name}.json"), "-o", str(work / "mem"),
                                     "--format", "label", "--tile", "1024", "--tile-overlap", "128", "--overwrite"])
        rows.append((size, seconds, peak))
        (work / name).unlink()
    base = rows[0][2]
    for size, seconds, peak in rows:
        decoded = size * size * 3 / 2**20
        print(f"{size} x {size}: peak RSS {peak:.0f} MB ({peak - base:+.0f} MB over the 1K run; the decoded image alone: {decoded:.0f} MB), {seconds:.1f} s")


def small_objects(work: Path, points: int) -> None:
    size = 512
    discs = spread_discs(size, 12, (10, 17), seed=2)
    write_large_scene(work / "small.tif", size, size, discs)
    common = ["--points-per-side", str(points), "--overwrite", "--stability-score-thresh", "0.3", "--pred-iou-thresh", "0"]
    scores = {}
    for name, extra in (("untiled", []), ("tiled", ["--tile", "256", "--tile-overlap", "32"])):
        seconds, _ = run_segment([str(work / "small.tif"), "-o", str(work / f"small_{name}"), *common, *extra])
        scores[name] = (recall(masks_of(work / f"small_{name}" / "small"), discs, size), seconds)
    print(f"small objects (12 discs, radius 10-16 px, 512 x 512, points per side {points}): recall untiled {scores['untiled'][0]:.2f} "
          f"({scores['untiled'][1]:.0f} s), tiled 256/32 {scores['tiled'][0]:.2f} ({scores['tiled'][1]:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-per-side", type=int, default=4, help="4K segment-everything grid (per tile when tiled)")
    parser.add_argument("--only", choices=("everything", "memory", "small"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if args.only in (None, "everything"):
            everything_4k(work, args.points_per_side)
        if args.only in (None, "memory"):
            memory_by_size(work)
        if args.only in (None, "small"):
            small_objects(work, 8)


if __name__ == "__main__":
    main()

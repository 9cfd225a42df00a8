"""images/s of `robustsam segment` (built-in model, prompts) in 1 process vs `--gpus 2` CPU workers.

    nice -n 10 python3 benchmarks/bench_scale.py --images 8 --size 256

The ratio includes torchrun's start-up and each worker's model build, as a user sees it. The GPU
rows run only where CUDA exists (`--device cuda`, one process vs `--gpus 2`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from click.testing import CliRunner

from robustsam_cli.main import cli


def make_job(root: Path, images: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    folder = root / "imgs"
    folder.mkdir()
    prompts = {}
    for index in range(images):
        iio.imwrite(folder / f"{index:03d}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        prompts[f"{index:03d}.png"] = [{"box": [8, 8, size // 2, size // 2]}, {"points": [[size // 3, size // 3]], "labels": [1]}]
    (root / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    return folder, root / "prompts.json"


def images_per_second(folder: Path, prompts: Path, output: Path, images: int, extra: list[str]) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["segment", str(folder), "--prompts", str(prompts), "-o", str(output), *extra])
    assert result.exit_code == 0, result.output
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, prompts = make_job(root, args.images, args.size)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            one = images_per_second(folder, prompts, root / f"{device}-1", args.images, ["--device", device])
            two = images_per_second(folder, prompts, root / f"{device}-2", args.images, ["--device", device, "--gpus", "2"])
            rows.append((device, one, two))
    print(f"| device | 1 process images/s | 2 processes images/s | ratio |\n|---|---|---|---|")
    for device, one, two in rows:
        print(f"| {device} | {one:.2f} | {two:.2f} | {two / one:.2f} |")
    if not torch.cuda.is_available():
        print("| cuda | not measured (no GPU) | not measured (no GPU) | - |")


if __name__ == "__main__":
    main()

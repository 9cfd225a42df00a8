"""images/s of `robustsam segment`, `eval`, `prior` and `degrade` (built-in model) in 1 process vs
`--gpus 2` CPU workers.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python3 benchmarks/bench_scale.py --images 48 --size 512

The ratio includes torchrun's start-up and each worker's model build, as a user sees it. An image
is an input image: eval goes through each in two conditions (clear, fog), degrade writes it under
all 15 published types. The GPU rows run only where CUDA exists (`--device cuda`, one process vs `--gpus 2`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this source tree, not an installed copy

from robustsam_cli.main import cli  # noqa: E402

COMMANDS = ("segment", "eval", "prior", "degrade")


def make_images(folder: Path, images: int, size: int) -> list[str]:
    """`images` size x size pictures with a bright square, written to `folder`; their file names."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    names = []
    for index in range(images):
        picture = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        picture[size // 4 : size // 2, size // 4 : size // 2] = 230
        names.append(f"{index:03d}.png")
        iio.imwrite(folder / names[-1], picture)
    return names


def command_args(command: str, root: Path, images: int, size: int) -> tuple[list[str], str]:
    """The command line (without its output folder) of a `command` job over `images` new images, and
    its output option."""
    split = root / command / "MSRA10K"  # eval's data: the Robust-Seg layout
    folder = split / "clear" if command == "eval" else root / command / "imgs"
    names = make_images(folder, images, size)
    if command == "segment":
        prompts = {name: [{"box": [8, 8, size // 2, size // 2]}, {"points": [[size // 3, size // 3]], "labels": [1]}] for name in names}
        (root / command / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
        return ["segment", str(folder), "--prompts", str(root / command / "prompts.json")], "-o"
    if command == "eval":
        (split / "fog").mkdir()
        (split / "masks").mkdir()
        masks = np.zeros((2, size, size), bool)
        masks[0, size // 4 : size // 2, size // 4 : size // 2] = True
        masks[1, size // 2 :, : size // 3] = True
        for name in names:
            iio.imwrite(split / "fog" / name, (iio.imread(split / "clear" / name) // 2 + 100).astype(np.uint8))
            np.save(split / "masks" / name.replace(".png", ".npy"), masks)
        return ["eval", "--data", str(split), "--model", "a=default"], "--out"
    if command == "prior":
        return ["prior", str(folder), "--task", "dehaze"], "-o"
    return ["degrade", str(folder), "--types", "all"], "-o"


def images_per_second(args: list[str], images: int) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--commands", default=",".join(COMMANDS), help="Comma-separated, of: " + ", ".join(COMMANDS))
    args = parser.parse_args()
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for command in args.commands.split(","):
            line, output = command_args(command, root, args.images, args.size)
            for device in devices:
                base = [*line, "--device", device, output]
                one = images_per_second([*base, str(root / command / f"{device}-1")], args.images)
                two = images_per_second([*base, str(root / command / f"{device}-2"), "--gpus", "2"], args.images)
                rows.append((command, device, one, two))
    print("| command | device | 1 process images/s | 2 processes images/s | ratio |\n|---|---|---|---|---|")
    for command, device, one, two in rows:
        print(f"| {command} | {device} | {one:.2f} | {two:.2f} | {two / one:.2f} |")
    if not torch.cuda.is_available():
        print("| all | cuda | not measured (no GPU) | not measured (no GPU) | - |")


if __name__ == "__main__":
    main()

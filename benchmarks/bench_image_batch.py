"""Images/s and peak memory of `robustsam segment` for --image-batch 1, 2, 4, 8, against N = 1 in the same run.

Each (model, N) runs `core.inference.segment` (what `robustsam segment` runs: images read ahead on
background threads, N encoded in one forward pass of the ViT, each decoded alone, PNG masks written)
in a fresh process, so that its peak resident memory (ru_maxrss) is its own; model loading and a
one-image warm-up are not timed. The models are the built-in one and vit_b with synthetic weights.

    python3 benchmarks/bench_image_batch.py --images 8 --batches 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from core import build_robustsam
from core.inference.segment import prepare_run
from core.model.checkpoint import expected_shapes
from core.model.default_model import DEFAULT_CHECKPOINT
from core.model.synthetic_weights import synthetic_state_dict

MODELS = ("default", "vit_b")


def make_inputs(folder: Path, images: int, height: int, width: int) -> Path:
    """`images` PNGs with a bright rectangle each and a prompt file with its box; returns the prompt file."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for index in range(images):
        image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        x1, y1 = x0 + width // 3, y0 + height // 3
        image[y0:y1, x0:x1] = rng.integers(120, 255, 3, dtype=np.uint8)
        iio.imwrite(folder / f"{index:03d}.png", image)
        prompts[f"{index:03d}.png"] = [{"box": [x0, y0, x1, y1]}]
    prompts_file = folder.parent / f"{folder.name}.json"
    prompts_file.write_text(json.dumps(prompts), encoding="utf-8")
    return prompts_file


def load_model(name: str):
    if name == "default":
        return build_robustsam(None, DEFAULT_CHECKPOINT)
    model = build_robustsam(name)
    model.load_state_dict(synthetic_state_dict(expected_shapes(name)))
    return model.eval()


def worker(model_name: str, image_batch: int, folder: Path, prompts_file: Path, output: Path) -> dict[str, float]:
    """One timed run in this process: seconds, images and peak resident memory (MiB)."""
    model = load_model(model_name)
    warm = prepare_run(model, [sorted(folder.iterdir())[0]], output / "warm", prompts=prompts_file)
    warm.run()
    run = prepare_run(model, [folder], output / "run", prompts=prompts_file, image_batch=image_batch)
    start = time.perf_counter()
    summary = run.run()
    seconds = time.perf_counter() - start
    assert not summary.failures and summary.images == len(run.jobs), summary
    return {"seconds": seconds, "images": summary.images, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--worker", nargs=5, metavar=("MODEL", "N", "FOLDER", "PROMPTS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model_name, image_batch, folder, prompts_file, output = args.worker
        print(json.dumps(worker(model_name, int(image_batch), Path(folder), Path(prompts_file), Path(output))))
        return
    print(f"{args.images} images {args.width}x{args.height}, one box each, CPU, torch threads {torch.get_num_threads()}")
    print(f"{'model':>8} {'N':>3} {'images/s':>9} {'vs N=1':>7} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prompts_file = make_inputs(root / "images", args.images, args.height, args.width)
        for model_name in args.models:
            baseline = None
            for image_batch in args.batches:
                command = [sys.executable, __file__, "--worker", model_name, str(image_batch), str(root / "images"),
                           str(prompts_file), str(root / f"out_{model_name}_{image_batch}")]
                result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                rate = result["images"] / result["seconds"]
                baseline = baseline or rate
                print(f"{model_name:>8} {image_batch:>3} {rate:>9.4f} {rate / baseline:>6.2f}x {result['peak_mib']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()

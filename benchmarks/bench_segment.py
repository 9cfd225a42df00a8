"""Images/s of `robustsam segment`'s pipeline against re-encoding the image for every prompt.

The published RobustSAM code runs the whole model (image encoder included) once per prompt;
`core.inference.segment` encodes each image once and decodes all its box prompts in batches. Both run in
the same process on the same synthetic-weight model, images and boxes, and write one PNG per mask.

    python3 benchmarks/bench_segment.py --model-type vit_b --images 1 --repeats 3

Each timing is the median of `--repeats` runs (fresh output folders), so one burst of load from
other processes does not decide a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

from core import RobustPredictor, build_robustsam
from core.model.checkpoint import expected_shapes
from core.io import read_image, write_mask
from core.inference.segment import prepare_run
from core.model.synthetic_weights import synthetic_state_dict


def make_inputs(folder: Path, images: int, height: int, width: int, prompts_per_image: int, seed: int = 0) -> dict[str, list[dict]]:
    """Writes `images` PNGs with bright rectangles and returns `prompts_per_image` boxes for each."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for index in range(images):
        image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        boxes = []
        for _ in range(prompts_per_image):
            x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            x1, y1 = x0 + int(rng.integers(16, width // 2)), y0 + int(rng.integers(16, height // 2))
            image[y0:y1, x0:x1] = rng.integers(120, 255, 3, dtype=np.uint8)
            boxes.append({"box": [x0, y0, x1, y1]})
        iio.imwrite(folder / f"{index:03d}.png", image)
        prompts[f"{index:03d}.png"] = boxes
    return prompts


def time_pipeline(model, folder: Path, prompts_file: Path, output: Path, robust: bool) -> float:
    """Seconds for core.inference.segment over the folder (one encode per image, batched prompts)."""
    start = time.perf_counter()
    summary = prepare_run(model, [folder], output, prompts=prompts_file, robust=robust).run()
    assert not summary.failures, summary.failures
    return time.perf_counter() - start


def time_reencode(model, folder: Path, prompts: dict[str, list[dict]], output: Path, robust: bool) -> float:
    """Seconds for the published code's way: set_image + predict for every prompt."""
    predictor = RobustPredictor(model, robust=robust)
    start = time.perf_counter()
    for name, image_prompts in prompts.items():
        image = read_image(folder / name)
        for k, prompt in enumerate(image_prompts):
            predictor.set_image(image)
            masks, _, _ = predictor.predict(box=np.array(prompt["box"], dtype=np.float64), multimask_output=False)
            write_mask(output / Path(name).stem / f"{k}.png", masks[0])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 10], help="box prompts per image")
    parser.add_argument("--mode", choices=["robust", "sam"], default="robust")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing; the median is reported")
    args = parser.parse_args()

    model = build_robustsam(args.model_type)
    model.load_state_dict(synthetic_state_dict(expected_shapes(args.model_type)))
    model = model.to(args.device)
    robust = args.mode == "robust"
    print(
        f"model {args.model_type} ({args.mode} path, synthetic weights), {args.images} images {args.width}x{args.height}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}, median of {args.repeats} runs"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = make_inputs(root / "warm", 1, args.height, args.width, 1)
        RobustPredictor(model, robust=robust).set_image(read_image(root / "warm" / next(iter(warm))))
        for count in args.prompts:
            folder = root / f"images_{count}"
            prompts = make_inputs(folder, args.images, args.height, args.width, count, seed=count)
            prompts_file = root / f"prompts_{count}.json"
            prompts_file.write_text(json.dumps(prompts), encoding="utf-8")
            ours = statistics.median(
                time_pipeline(model, folder, prompts_file, root / f"ours_{count}_{run}", robust) for run in range(args.repeats)
            )
            baseline = statistics.median(
                time_reencode(model, folder, prompts, root / f"reencode_{count}_{run}", robust) for run in range(args.repeats)
            )
            rows.append((count, args.images / ours, args.images / baseline, baseline / ours))
    print(f"{'prompts/image':>13} {'segment images/s':>17} {'re-encode images/s':>19} {'speed-up':>9}")
    for count, ours_rate, baseline_rate, ratio in rows:
        print(f"{count:>13} {ours_rate:>17.4f} {baseline_rate:>19.4f} {ratio:>8.2f}x")


if __name__ == "__main__":
    main()

"""Time to score one image with many objects, as `robustsam eval` does it and two slower ways.

  encode per object : set_image before every object (what a per-prompt loop over SamPredictor does)
  encode once, 1/call: one embedding per image, one prompt per decoder call (--batch-size 1)
  encode once, batched: one embedding per image, all prompts in one decoder call (the default)

Run: python3 benchmarks/bench_eval.py [--model-type vit_tiny] [--objects 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from core import RobustPredictor, build_robustsam
from core.data.datasets import Sample
from core.evaluation.prompt_sampling import sample_prompts
from core.evaluation.protocol import score_image


def synthetic_sample(size: int, objects: int) -> Sample:
    """A size x size image with `objects` coloured rectangles on a grid, and their masks."""
    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), 30, np.uint8)
    masks = np.zeros((objects, size, size), bool)
    side = int(np.ceil(np.sqrt(objects)))
    cell = size // side
    for index in range(objects):
        top, left = (index // side) * cell, (index % side) * cell
        masks[index, top + 2 : top + cell - 2, left + 2 : left + cell - 2] = True
        image[masks[index]] = rng.integers(60, 255, 3)
    return Sample("bench", image, masks)


def best_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="vit_tiny")
    parser.add_argument("--objects", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_robustsam(args.model_type, device=args.device)
    predictor = RobustPredictor(model)
    sample = synthetic_sample(model.image_encoder.img_size, args.objects)
    prompts = sample_prompts(sample.masks, sample.name, seed=0)

    def encode_per_object() -> None:
        for index in range(len(prompts)):
            single = Sample(sample.name, sample.image, sample.masks[index : index + 1])
            score_image(predictor, single, prompts[index : index + 1], "points", batch_size=1)

    ways = {
        "encode per object": encode_per_object,
        "encode once, 1 prompt/call": lambda: score_image(predictor, sample, prompts, "points", batch_size=1),
        "encode once, batched": lambda: score_image(predictor, sample, prompts, "points", batch_size=len(prompts)),
    }
    score_image(predictor, sample, prompts, "points", batch_size=len(prompts))  # warm-up
    seconds = {name: best_time(run, args.repeats) for name, run in ways.items()}
    baseline = seconds["encode per object"]
    table = Table(title=f"{args.model_type}, {args.objects} objects, 1 image, {args.device}, best of {args.repeats}")
    for column in ("way", "seconds / image", "speed-up vs encode per object"):
        table.add_column(column, justify="left" if column == "way" else "right")
    for name, value in seconds.items():
        table.add_row(name, f"{value:.3f}", f"{baseline / value:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()

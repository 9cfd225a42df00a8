"""RobustPredictor under bf16 (or fp16) autocast against float32: set_image and 10-prompt times
in one process, and how far the outputs move (vit_b, synthetic weights, one 640x480 image):

    python3 benchmarks/bench_precision.py [--precision bf16] [--device cpu] [--repeats 3]

Synthetic random weights put far more logits near the mask threshold than a trained model does,
so the mask agreement printed is a pessimistic figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from core import RobustPredictor, build_robustsam
from core.model.checkpoint import expected_shapes
from core.model.synthetic_weights import synthetic_state_dict

BOXES = [[10 + 20 * i, 20 + 10 * i, 300 + 10 * i, 400] for i in range(10)]


def run(predictor: RobustPredictor, image: np.ndarray, repeats: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Median set_image and 10-box decode seconds, and the last masks and low-res logits."""
    set_times, decode_times = [], []
    predictor.set_image(image)  # warm-up
    boxes = predictor.transform.apply_boxes_torch(torch.tensor(BOXES, dtype=torch.float), predictor.original_size)
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.set_image(image)
        set_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        masks, _, logits = predictor.predict_torch(None, None, boxes.to(predictor.device), multimask_output=False)
        decode_times.append(time.perf_counter() - start)
    return statistics.median(set_times), statistics.median(decode_times), masks.cpu(), logits.float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = build_robustsam("vit_b")
    model.load_state_dict(synthetic_state_dict(expected_shapes("vit_b")))
    model = model.to(args.device).eval()
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    results = {p: run(RobustPredictor(model, precision=p), image, args.repeats) for p in ("fp32", args.precision)}
    print(f"vit_b robust path, {args.device}, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| precision | set_image s | 10 prompts s |\n|---|---:|---:|")
    for precision, (set_s, decode_s, _, _) in results.items():
        print(f"| {precision} | {set_s:.2f} | {decode_s:.2f} |")
    _, _, masks32, logits32 = results["fp32"]
    _, _, masks, logits = results[args.precision]
    agreement = (masks == masks32).float().mean().item()
    drift = ((logits - logits32).norm() / logits32.norm()).item()
    print(f"\n{args.precision} vs fp32: {100 * agreement:.1f}% of mask pixels equal, low-res logits differ by {100 * drift:.1f}% (relative norm)")


if __name__ == "__main__":
    main()

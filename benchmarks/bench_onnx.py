"""Encoder and per-prompt decode time: onnxruntime (fp32 and int8 decoder) against the torch predictor.

One run, single-threaded on both sides (torch.set_num_threads(1), onnxruntime intra-op threads 1),
on synthetic weights (`core.model.synthetic_weights`): the export of --model-type on --mode's path
is written to a temporary folder and timed too. For each predictor:
  * `set_image` on a 480x640 image (median of --repeats, after one warm-up);
  * per-prompt decode: --prompts box prompts one call each, multimask_output=False (median per prompt).
Ratios are torch time / onnxruntime time (above 1: onnxruntime is faster).

Run: nice -n 10 python3 benchmarks/bench_onnx.py [--model-type vit_b] [--mode robust|sam] [--repeats 3] [--prompts 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import RobustPredictor, RobustSam, get_config  # noqa: E402
from core.deploy import OnnxPredictor, export_onnx  # noqa: E402
from core.model.checkpoint import expected_shapes  # noqa: E402
from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--mode", choices=["robust", "sam"], default="robust")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    robust = args.mode == "robust"

    model = RobustSam(get_config(args.model_type), args.model_type)
    model.load_state_dict(dict(synthetic_state_dict(expected_shapes(args.model_type))))
    model.eval()
    rng = np.random.default_rng(0)
    image = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    boxes = [np.array([x, y, x + 200, y + 150]) for x, y in rng.integers(0, 400, size=(args.prompts, 2))]

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        export_onnx(model, folder, robust=robust, quantize=True)
        export_seconds = time.perf_counter() - start
        predictors = {
            "torch": RobustPredictor(model, robust=robust),
            "onnxruntime fp32": OnnxPredictor(folder, threads=1),
            "onnxruntime int8 decoder": OnnxPredictor(folder, quantized=True, threads=1),
        }
        rows = {}
        for name, predictor in predictors.items():
            encode = median_seconds(lambda: predictor.set_image(image), args.repeats)

            def decode_all() -> None:
                for box in boxes:
                    predictor.predict(box=box, multimask_output=False)

            decode = median_seconds(decode_all, args.repeats) / len(boxes)
            rows[name] = (encode, decode)

    print(f"{args.model_type}, {args.mode} path, synthetic weights, 1 thread each; export took {export_seconds:.0f} s")
    print(f"{'predictor':<26} {'set_image s':>12} {'x torch':>8} {'decode ms/prompt':>17} {'x torch':>8}")
    base_encode, base_decode = rows["torch"]
    for name, (encode, decode) in rows.items():
        print(f"{name:<26} {encode:>12.3f} {base_encode / encode:>8.2f} {decode * 1e3:>17.2f} {base_decode / decode:>8.2f}")


if __name__ == "__main__":
    main()

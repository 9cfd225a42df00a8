"""set_image and prompt decoding: our robust path, our SAM path and segment_anything.SamPredictor.

One run times, interleaved round by round so that they share the machine's load:
  * `set_image` (median of --repeats) for RobustPredictor(robust=True), RobustPredictor(robust=False)
    and segment_anything's SamPredictor on the same SAM weights;
  * decoding 1 and 10 box prompts on a set image (per prompt, and the cost of one extra prompt);
  * a 4096^3 float32 matmul, for the machine's measured peak in the same conditions;
and reports the encoder's FLOP count with the fraction of that peak reached, and the peak resident
memory of each predictor while predicting (one child process per predictor: VmHWM from
/proc/self/status, reset after the weights are loaded; loading's own peak is printed too).

Run: python3 benchmarks/bench_predictor.py [--model-type vit_b] [--device cpu] [--repeats 3]
                                           [--precision fp32|bf16|fp16] [--compile] [--no-memory]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segment_anything import SamPredictor  # noqa: E402
from segment_anything.modeling import MaskDecoder, Sam  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import core.model.winograd  # noqa: E402
from core import RobustPredictor, RobustSam, get_config  # noqa: E402
from core.model.checkpoint import expected_shapes, is_robust_key  # noqa: E402
from core.model.robustsam import PIXEL_MEAN, PIXEL_STD  # noqa: E402
from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402

PATHS = ("robust", "sam", "segment_anything")
PROMPT_COUNTS = (1, 10)
MATMUL_SIDE = 4096


def synthetic_model(model_type: str, device: str) -> RobustSam:
    """RobustSam with the deterministic synthetic weights of the released key names."""
    model = RobustSam(get_config(model_type), model_type)
    model.load_state_dict(synthetic_state_dict(expected_shapes(model_type)))
    return model.to(device).eval()


def segment_anything_sam(model: RobustSam) -> Sam:
    """segment_anything's own Sam on `model`'s SAM weights (encoder and prompt encoder shared)."""
    config = model.config
    decoder = MaskDecoder(
        transformer_dim=config.prompt_embed_dim,
        transformer=model.mask_decoder.transformer,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    sam = Sam(model.image_encoder, model.prompt_encoder, decoder, list(PIXEL_MEAN), list(PIXEL_STD))
    sam.load_state_dict({k: v for k, v in model.state_dict().items() if not is_robust_key(k)})
    return sam.to(model.device).eval()


def make_predictor(path: str, model: RobustSam, precision: str) -> SamPredictor:
    if path == "segment_anything":
        return SamPredictor(segment_anything_sam(model))
    # Our SAM path on the same fused encoder as the robust path: the ratio is the robust modules' cost.
    return RobustPredictor(model, robust=path == "robust", precision=precision, exact_sam=False)


def test_image(height: int = 768, width: int = 1024) -> np.ndarray:
    """A deterministic 768x1024 RGB image (a smooth gradient with noise)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 128 / (width + height)], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def boxes(predictor: SamPredictor, count: int) -> torch.Tensor:
    """`count` different boxes in the predictor's input frame."""
    h, w = predictor.original_size
    rng = np.random.default_rng(count)
    corners = np.sort(rng.uniform(0, 1, (count, 2, 2)), axis=1) * np.array([w, h])
    raw = corners.reshape(count, 4)
    return torch.as_tensor(predictor.transform.apply_boxes(raw, predictor.original_size), device=predictor.device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_gflops(device: torch.device) -> float:
    a = torch.randn(MATMUL_SIDE, MATMUL_SIDE, device=device)
    b = torch.randn(MATMUL_SIDE, MATMUL_SIDE, device=device)
    seconds, _ = timed(lambda: a @ b, device)
    return 2 * MATMUL_SIDE**3 / seconds / 1e9


def encoder_flops(model: RobustSam) -> dict[str, float]:
    """FLOPs of one image: SAM's encoder forward and ours (counted on the meta device, where the
    fused attention decomposes into counted matrix products), and the robust image feature with
    direct 3x3 convolutions (the work it stands for) and as Winograd executes it."""
    config = model.config
    with torch.device("meta"):
        meta = RobustSam(config, model.model_type).eval()
        images = torch.empty(1, 3, config.image_size, config.image_size)
    counts = {}
    with torch.inference_mode():
        for name, exact in (("encoder (segment_anything)", True), ("encoder (ours)", False)):
            meta.exact_encoder = exact
            with FlopCounterMode(display=False) as counter:
                meta.encode(images)
            counts[name] = counter.get_total_flops()
        size = config.embedding_size
        embedding = torch.randn(1, config.prompt_embed_dim, size, size, device=model.device)
        early = torch.randn(1, config.encoder_embed_dim, size, size, device=model.device)
        threshold = core.model.winograd.WINOGRAD_MIN_CHANNELS
        for name, minimum in (("robust image feature (direct)", 10**9), ("robust image feature (Winograd)", threshold)):
            core.model.winograd.WINOGRAD_MIN_CHANNELS = minimum
            try:
                with FlopCounterMode(display=False) as counter:
                    model.mask_decoder.image_feature(embedding, early)
            finally:
                core.model.winograd.WINOGRAD_MIN_CHANNELS = threshold
            counts[name] = counter.get_total_flops()
    return counts


def resident_gb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak), in GB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 2**20


def probe_memory(path: str, model_type: str, device: str, precision: str) -> None:
    """Child process: builds the model, then one set_image and a 10-prompt decode; prints as JSON
    the peak resident memory while loading and, the peak reset after loading, while predicting."""
    model = synthetic_model(model_type, device)
    predictor = make_predictor(path, model, precision)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand the loader's freed heap back to the system
    result = {"load_peak_gb": resident_gb("VmHWM"), "loaded_gb": resident_gb("VmRSS")}
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    predictor.set_image(test_image())
    predictor.predict_torch(None, None, boxes(predictor, 10))
    result["inference_peak_gb"] = resident_gb("VmHWM")
    if model.device.type == "cuda":
        result["cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result))


def peak_memory(path: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--probe-memory", path, "--model-type", args.model_type]
    command += ["--device", args.device, "--precision", args.precision]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="our predictors' precision")
    parser.add_argument("--compile", action="store_true", help="torch.compile our encoder forward")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--probe-memory", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_memory:
        probe_memory(args.probe_memory, args.model_type, args.device, args.precision)
        return

    torch.manual_seed(0)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    model = synthetic_model(args.model_type, args.device)
    if args.compile:
        model.encode = torch.compile(model.encode)
    predictors = {path: make_predictor(path, model, args.precision) for path in PATHS}
    image = test_image()

    set_times: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
    decode_times: dict[tuple[str, int], list[float]] = {(path, n): [] for path in PATHS for n in PROMPT_COUNTS}
    peaks = []
    for predictor in predictors.values():  # warm-up: kernel selection, caches, compilation
        predictor.set_image(image)
    prompts = {count: boxes(predictors["robust"], count) for count in PROMPT_COUNTS}
    for _ in range(args.repeats):
        peaks.append(matmul_gflops(device))
        for path, predictor in predictors.items():
            set_times[path].append(timed(lambda: predictor.set_image(image), device))
            for count, prompt in prompts.items():
                for _ in range(2):
                    seconds, _ = timed(lambda: predictor.predict_torch(None, None, prompt), device)
                    decode_times[(path, count)].append(seconds)
    load_after = os.getloadavg()

    set_median = {path: median([wall for wall, _ in times]) for path, times in set_times.items()}
    cpu_median = {path: median([cpu for _, cpu in times]) for path, times in set_times.items()}
    decode_median = {key: median(times) for key, times in decode_times.items()}
    peak = median(peaks)
    flops = encoder_flops(model)
    memory = {} if args.no_memory else {path: peak_memory(path, args) for path in PATHS}

    baseline = set_median["segment_anything"]
    threads = torch.get_num_threads() if device.type == "cpu" else None
    print(f"\n{args.model_type}, {args.device}{f' ({threads} threads)' if threads else ''}, precision {args.precision}"
          f"{', compiled' if args.compile else ''}; medians of {args.repeats} runs; 768x1024 image")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; matmul peak {peak:.0f} GFLOP/s "
          f"(min {min(peaks):.0f}, max {max(peaks):.0f})\n")
    print("| predictor | set_image s | images/s | CPU s | vs segment_anything | 1 prompt ms | 10 prompts ms/prompt "
          "| extra prompt / set_image | peak RSS predicting GB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"robust": "ours, robust path", "sam": "ours, SAM path", "segment_anything": "segment_anything.SamPredictor"}
    for path in PATHS:
        one, ten = decode_median[(path, 1)], decode_median[(path, 10)]
        extra = (ten - one) / (10 - 1)
        rss = f"{memory[path]['inference_peak_gb']:.2f}" if memory else "-"
        print(f"| {names[path]} | {set_median[path]:.2f} | {1 / set_median[path]:.2f} | {cpu_median[path]:.2f} | {set_median[path] / baseline:.2f}x "
              f"| {one * 1e3:.0f} | {ten / 10 * 1e3:.0f} | {extra / set_median[path] * 100:.1f}% | {rss} |")
    print(f"\nrobust / SAM path (ours): {set_median['robust'] / set_median['sam']:.2f}x")
    for path in PATHS if memory else ():
        print(f"{names[path]}: resident after loading {memory[path]['loaded_gb']:.2f} GB, "
              f"peak while loading {memory[path]['load_peak_gb']:.2f} GB")
    print("\n| work per image | GFLOP | achieved GFLOP/s | fraction of matmul peak |")
    print("|---|---:|---:|---:|")
    rows = [
        ("encoder (segment_anything)", flops["encoder (segment_anything)"], baseline),
        ("encoder (ours), in our SAM-path set_image", flops["encoder (ours)"], set_median["sam"]),
        (
            "encoder + robust image feature (direct-conv FLOPs), in our robust set_image",
            flops["encoder (ours)"] + flops["robust image feature (direct)"],
            set_median["robust"],
        ),
    ]
    for name, count, seconds in rows:
        rate = count / seconds / 1e9
        print(f"| {name} | {count / 1e9:.0f} | {rate:.0f} | {rate / peak:.0%} |")
    print(f"\nrobust image feature as executed (Winograd): {flops['robust image feature (Winograd)'] / 1e9:.0f} GFLOP")
    if memory and "cuda_gb" in memory["robust"]:
        for path in PATHS:
            print(f"{names[path]}: peak CUDA memory {memory[path]['cuda_gb']:.2f} GB")


if __name__ == "__main__":
    main()

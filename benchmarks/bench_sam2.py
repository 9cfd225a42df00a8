"""SAM 2 set_image and prompt decoding: RobustSAM2 (robust path), our SAM 2 path and sam2's own
SAM2ImagePredictor, on synthetic weights of the real key names, in one run.

For each model type, rounds interleave the three predictors so that they share the machine's load; each
round times one `set_image` of a 768x1024 image and one `predict` of --prompts boxes on it. Printed: the
median seconds, and the ratios robust / SAM 2 path (the robust modules' cost; target <= 1.15) and SAM 2
path / SAM2ImagePredictor (ours against sam2's). `--parts` also times the robust path's own pieces (the
image feature, the mask-feature AMFG of the prompts; under bf16/fp16 also the image feature on inputs in
that precision or on a contiguous early feature, and the AMFG on float32 input); `--profile` prints the top
operators of one robust set_image + predict.

Run: python3 benchmarks/bench_sam2.py [--model-types sam2.1_hiera_t,sam2.1_hiera_b+] [--size 1024]
                                      [--device cpu] [--precision fp32|bf16|fp16] [--rounds 3] [--prompts 16]
                                      [--parts] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_predictor import synchronize, test_image, timed  # noqa: E402

from core.device import precision_autocast  # noqa: E402
from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402

PATHS = ("robust", "sam2", "SAM2ImagePredictor")


def sam2_predictor(model_type: str, path: str, precision: str, size: int, device: torch.device) -> tuple[Any, Callable[[], contextlib.AbstractContextManager]]:
    """A SAM 2 predictor of `path` (one of PATHS) on synthetic weights of `model_type`'s real key names, and
    the context its calls run in: ours autocast themselves; SAM2ImagePredictor runs under the same autocast
    from outside."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from core.sam2 import Sam2Predictor, build_sam2_model, get_sam2_config, is_sam2_robust_key

    model = build_sam2_model(model_type, image_size=size)
    state = dict(synthetic_state_dict({key: value.shape for key, value in model.state_dict().items()}))
    if path != "SAM2ImagePredictor":
        model.load_state_dict(state)
        return Sam2Predictor(model.to(device).eval(), robust=path == "robust", precision=precision), contextlib.nullcontext
    del model
    config = get_sam2_config(model_type)
    reference = build_sam2(config.config_file, None, device=str(device),
                           hydra_overrides_extra=[*config.overrides, f"++model.image_size={size}"])
    reference.load_state_dict({key: value for key, value in state.items() if not is_sam2_robust_key(key)})
    predictor = SAM2ImagePredictor(reference)
    predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]  # it assumes 1024
    return predictor, lambda: precision_autocast(device, precision)


def prompt_boxes(image: np.ndarray, count: int) -> np.ndarray:
    """`count` different XYXY boxes in the image's pixels (the GPU suite's)."""
    h, w = image.shape[:2]
    corners = np.sort(np.random.default_rng(count).uniform(0, 1, (count, 2, 2)), axis=1) * np.array([w, h])
    return corners.reshape(count, 4)


def time_paths(model_type: str, args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    """Median seconds of set_image and of one predict of args.prompts boxes, per path."""
    image = test_image()
    boxes = prompt_boxes(image, args.prompts)
    predictors = {path: sam2_predictor(model_type, path, args.precision, args.size, device) for path in PATHS}
    times: dict[str, dict[str, list[float]]] = {path: {"set_image": [], "predict": []} for path in PATHS}
    with torch.inference_mode():
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for path, (predictor, context) in predictors.items():
                with context():
                    encode, _ = timed(lambda: predictor.set_image(image), device)
                    decode, _ = timed(lambda: predictor.predict(box=boxes, multimask_output=False), device)
                if round_:
                    times[path]["set_image"].append(encode)
                    times[path]["predict"].append(decode)
    if args.parts:
        times["robust"].update(robust_parts(predictors["robust"][0], boxes, args.rounds, device))
    if args.profile:
        profile(predictors["robust"][0], image, boxes, device)
    return {path: {key: statistics.median(values) for key, values in entry.items()} for path, entry in times.items()}


def robust_parts(predictor: Any, boxes: np.ndarray, rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of the robust path's own work on the image set last: the image feature (per image) and the
    mask-feature AMFG of the prompts' upscaled embeddings (per predict)."""
    decoder = predictor.model.sam_mask_decoder
    encoding = predictor.encoding
    prompts = torch.as_tensor(predictor.transform.apply_boxes(boxes, predictor.original_size), device=device)
    with torch.inference_mode(), precision_autocast(device, predictor.precision):
        sparse, dense = predictor.model.embed_prompts(None, None, prompts)
        out = predictor.model.decode_prompts(encoding, sparse, dense, predictor.robust_features, robust=False, return_features=False)
        upscaled = decoder._upscale(out.mask_tokens.new_zeros(len(boxes), decoder.transformer_dim, *encoding.embedding.shape[-2:]),
                                    encoding.high_res, len(boxes))
        runs = {
            "image_feature": lambda: decoder.image_feature(encoding.embedding, encoding.early),
            "mask_feature_amfg": lambda: decoder.fourier_mask_features(upscaled),
        }
        lowp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(predictor.precision)
        if lowp is not None:
            runs["image_feature_lowp_inputs"] = lambda: decoder.image_feature(encoding.embedding.to(lowp), encoding.early.to(lowp))
            runs["image_feature_contiguous"] = lambda: decoder.image_feature(encoding.embedding, encoding.early.contiguous())
            runs["mask_feature_amfg_fp32"] = lambda: decoder.fourier_mask_features(upscaled.float())
        return {name: [timed(run, device)[0] for _ in range(rounds + 1)][1:] for name, run in runs.items()}


def profile(predictor: Any, image: np.ndarray, boxes: np.ndarray, device: torch.device) -> None:
    """Prints the operators taking most time in one robust set_image + predict."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities, record_shapes=True) as run:
        predictor.set_image(image)
        predictor.predict(box=boxes, multimask_output=False)
        synchronize(device)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(run.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=25, max_name_column_width=40,
                                                             max_shapes_column_width=70))


def report(model_type: str, medians: dict[str, dict[str, float]], prompts: int) -> None:
    robust, sam2, reference = (medians[path] for path in PATHS)
    print(f"\n{model_type}")
    print(f"{'path':<20} {'set_image s':>12} {'per prompt ms':>14}")
    for path in PATHS:
        print(f"{path:<20} {medians[path]['set_image']:12.3f} {1e3 * medians[path]['predict'] / prompts:14.2f}")
    for name in robust:
        if name not in ("set_image", "predict"):
            print(f"robust {name:<24} {robust[name]:.3f} s")
    print(f"robust / SAM 2 path:             set_image {robust['set_image'] / sam2['set_image']:.3f}x, "
          f"decoding {robust['predict'] / sam2['predict']:.3f}x (target <= 1.15x)")
    print(f"SAM 2 path / SAM2ImagePredictor: set_image {sam2['set_image'] / reference['set_image']:.3f}x, "
          f"decoding {sam2['predict'] / reference['predict']:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-types", default="sam2.1_hiera_t,sam2.1_hiera_b+")
    parser.add_argument("--size", type=int, default=1024, help="SAM 2's input side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--parts", action="store_true", help="also time the robust path's image feature and mask-feature AMFG")
    parser.add_argument("--profile", action="store_true", help="print the top operators of one robust set_image + predict")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {args.precision}, {args.size} px, {torch.get_num_threads()} threads, "
          f"{args.prompts} box prompts, median of {args.rounds} rounds")
    for model_type in args.model_types.split(","):
        report(model_type, time_paths(model_type, args, device), args.prompts)


if __name__ == "__main__":
    main()

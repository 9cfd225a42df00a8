"""Where the robust path's bf16 error comes from (CPU, synthetic weights of the real key names).

1. How much each step of the image-feature AMFG blocks amplifies bf16 rounding of its input, all arithmetic
   in float32 (vit_b encoder outputs of a 768x1024 image): relative error of the step's output when its
   input is rounded to bf16, over the input's rounding error.
2. The robust and SAM 2 paths' low-res logits under bf16 autocast against float32 (sam2.1_hiera_micro,
   256 px), then with more and more of the robust path computed in float32, then with the encoder too.

Run: python3 benchmarks/robust_bf16_error.py        # about 5 minutes on 2 cores
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_predictor import synthetic_model, test_image  # noqa: E402
from bench_sam2 import prompt_boxes, sam2_predictor  # noqa: E402

from core import RobustPredictor  # noqa: E402
from core.model import modules, robust_head  # noqa: E402


def relative(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(actual) - np.asarray(expected)) / np.linalg.norm(np.asarray(expected)))


def bf16_rounded(x: torch.Tensor) -> torch.Tensor:
    return x.bfloat16().float()


def step_amplification() -> None:
    predictor = RobustPredictor(synthetic_model("vit_b", "cpu"), robust=True, exact_sam=False)
    predictor.set_image(test_image())
    decoder = predictor.model.mask_decoder
    inputs = {"early feature": (decoder.fourier_first_layer_features, predictor.early_features),
              "embedding": (decoder.fourier_last_layer_features, predictor.features)}
    with torch.inference_mode():
        for name, (block, x) in inputs.items():
            features = block.dnc_block_combined(x)
            filtered = block.fgm_block(features)
            steps = [("degradation block", block.dnc_block_combined, x), ("Fourier step", block.fgm_block, features),
                     ("3x3 fusion", block.conv_layer, filtered), ("whole block", block, x)]
            for step, run, value in steps:
                error_in = relative(bf16_rounded(value), value)
                error_out = relative(run(bf16_rounded(value)), run(value))
                print(f"AMFG of the {name:13s} {step:18s} bf16 input rounding {error_in:.2e} -> output {error_out:.2e} (x{error_out / error_in:.1f})")


def in_float32(function: Callable) -> Callable:
    """`function` with autocast off and float32 tensor arguments."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", enabled=False):
            return function(*[a.float() if torch.is_tensor(a) else a for a in args], **kwargs)
    return run


@contextlib.contextmanager
def patched(owner: Any, name: str) -> Any:
    original = getattr(owner, name)
    setattr(owner, name, in_float32(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def logits_error() -> None:
    image = test_image(192, 256)
    box = prompt_boxes(image, 1)[0]
    device = torch.device("cpu")

    def logits(path: str, precision: str, encoder_fp32: bool = False) -> np.ndarray:
        predictor, _ = sam2_predictor("sam2.1_hiera_micro", path, precision, 256, device)
        if encoder_fp32:
            predictor.model.encode_images = in_float32(predictor.model.encode_images)
        predictor.set_image(image)
        return predictor.predict(box=box, return_logits=True)[2]

    for path in ("sam2", "robust"):
        print(f"sam2.1_hiera_micro {path:6s} path, bf16 against fp32: {relative(logits(path, 'bf16'), logits(path, 'fp32')):.4f}")
    expected = logits("robust", "fp32")
    with contextlib.ExitStack() as stack:
        for label, owner, name in (("+ AMFG blocks (with tails) in fp32", modules.AMFGBlock, "forward"),
                                   ("+ AOTG in fp32", modules.TokenRefiner, "forward"),
                                   ("+ mask read-out in fp32", robust_head, "read_masks")):
            stack.enter_context(patched(owner, name))
            print(f"  robust path {label:36s} {relative(logits('robust', 'bf16'), expected):.4f}")
        print(f"  robust path {'+ the encoder in fp32':36s} {relative(logits('robust', 'bf16', encoder_fp32=True), expected):.4f}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads")
    step_amplification()
    logits_error()

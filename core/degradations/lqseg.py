"""LQSeg (GleSAM, CVPR 2025): Real-ESRGAN's second-order chain of blur, random resize, noise and JPEG;
the downsampling rate 1, 2 or 4 of the second resize makes the levels LQ-1, LQ-2 and LQ-3.

Per sample, from its own generator (GleSAM's `degraded_utils/utils_data/make_paired_data_guo.py` for
the test sets, `dataset/codeformer_add_maskv3_ms.py` with `options/lrseg_add_mask_multi_dataset_ms.yaml`
for training):
  1. blur (mixed kernel, sigma 0.2-3, or sinc with p 0.1), resize up / down / keep, Gaussian noise
     (sigma 1-30) or Poisson noise (scale 0.05-3), gray with p 0.4, JPEG quality 30-95;
  2. blur with p 0.8 (sigma 0.2-1.5), resize to (H, W) / rate x (0.3-1.2 | 1), noise (sigma 1-25 or
     Poisson 0.05-2.5), then, in either order with equal odds, JPEG 30-95 and [resize back to (H, W) +
     sinc filter with p 0.8].
Test sets (`lqseg`, levels 1..3) use the first resize of make_paired_data_guo.py (up 0.2 / down 0.7 /
keep 0.1, scale 0.15-1.5); training (`lqseg_training`) that of the training yaml (0.1 / 0.2 / 0.7,
0.5-1.5) and draws the rate per sample from (1, 2, 3, 3, 4, 4, 4, 4).

Training chains (`LQSEG_CHAINS`): "released", the default, is the chain as the released loader executes
it: its second blur applies the first stage's kernel again (the loader draws a second kernel from the
YAML's second-stage settings, sigma 0.2-1.5, and never uses it) and the result is rounded to 8 bits at
the end; that is what GleSAM's published models were trained on. "yaml" is the YAML's intent: the second
blur draws its own kernel (sigma 0.2-1.5, sinc with p 0.1); the same 8-bit rounding.

Differences, on purpose: the result keeps the input's size (make_paired_data_guo.py writes 512 x 512
whatever the input; masks here must match the image); the clear image is not USM-sharpened first
(the test-set script does, the training loader does not); JPEG is `codec.jpeg` (libjpeg's tables,
exact rounding) instead of OpenCV / DiffJPEG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .codec import jpeg
from .realesrgan import RESIZE_MODES, add_noise, blur_kernel, choose, filter_image, final_sinc_kernel, pick, resize
from .registry import GeneratorArg, check_images, resolve_generators, working_copy
from .sampling import Range, lerp, unit

LQSEG_RATES = {1: 1, 2: 2, 3: 4}
LQSEG_TYPES = {f"LQ-{level}": level for level in LQSEG_RATES}  # `robustsam degrade` type -> level
TRAINING_RATES = (1, 2, 3, 3, 4, 4, 4, 4)
GRAY_NOISE_PROBABILITY = 0.4
GAUSSIAN_PROBABILITY = 0.5
SECOND_BLUR_PROBABILITY = 0.8
FINAL_SINC_PROBABILITY = 0.8
LQSEG_CHAINS = ("released", "yaml")


@dataclass(frozen=True)
class ResizeStep:
    """Probabilities of (up, down, keep) and the scale range: up draws in [1, high], down in [low, 1]."""

    probabilities: tuple[float, float, float]
    scale: Range

    def draw(self, generator: torch.Generator) -> float:
        direction = choose(generator, self.probabilities)
        u = unit(generator)
        return (lerp((1.0, self.scale[1]), u), lerp((self.scale[0], 1.0), u), 1.0)[direction]


TEST_FIRST_RESIZE = ResizeStep((0.2, 0.7, 0.1), (0.15, 1.5))
TRAIN_FIRST_RESIZE = ResizeStep((0.1, 0.2, 0.7), (0.5, 1.5))
SECOND_RESIZE = ResizeStep((0.3, 0.4, 0.3), (0.3, 1.2))


def _jpeg(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    quality = round(lerp((30.0, 95.0), unit(generator)))
    return jpeg(image.clamp(0, 1), torch.tensor([quality], device=image.device)).clamp(0, 1)


def _chain(image: torch.Tensor, generator: torch.Generator, rate: int, first_resize: ResizeStep,
           chain: Optional[str] = None) -> torch.Tensor:
    """One (1, 3, H, W) image through the second-order chain with downsampling `rate`. `chain` None is the
    test-set chain; "released" / "yaml" the training chains (see the module's docstring)."""
    height, width = image.shape[-2:]
    first_kernel = blur_kernel(generator, (0.2, 3.0))
    out = filter_image(image, first_kernel)
    scale = first_resize.draw(generator)
    out = resize(out, (int(height * scale), int(width * scale)), pick(generator, RESIZE_MODES))
    out = add_noise(out, generator, GAUSSIAN_PROBABILITY, (1.0, 30.0), (0.05, 3.0), GRAY_NOISE_PROBABILITY)
    out = _jpeg(out, generator)

    second_kernel = blur_kernel(generator, (0.2, 1.5))  # drawn by every chain, as the released loader draws it
    kernel = first_kernel if chain == "released" else second_kernel
    if unit(generator) < SECOND_BLUR_PROBABILITY:
        out = filter_image(out, kernel)
    scale = SECOND_RESIZE.draw(generator)
    out = resize(out, (int(height / rate * scale), int(width / rate * scale)), pick(generator, RESIZE_MODES))
    out = add_noise(out, generator, GAUSSIAN_PROBABILITY, (1.0, 25.0), (0.05, 2.5), GRAY_NOISE_PROBABILITY)
    sinc = final_sinc_kernel(generator) if unit(generator) < FINAL_SINC_PROBABILITY else None
    jpeg_first = unit(generator) < 0.5
    mode = pick(generator, RESIZE_MODES)
    if jpeg_first:
        out = _jpeg(out, generator)
    out = resize(out, (height, width), mode)
    if sinc is not None:
        out = filter_image(out, sinc)
    if not jpeg_first:
        out = _jpeg(out, generator)
    out = out.clamp(0, 1)
    # the training loader's last step: `np.clip((out * 255.0).round(), 0, 255) / 255.`
    return out if chain is None else (out * 255).round() / 255


def _run(images: torch.Tensor, generator: GeneratorArg, rates: Optional[int], first_resize: ResizeStep,
         chain: Optional[str] = None) -> torch.Tensor:
    check_images(images)
    generators = resolve_generators(generator, images.shape[0])
    work = working_copy(images)
    out = []
    for i, sample_generator in enumerate(generators):
        rate = rates if rates is not None else pick(sample_generator, TRAINING_RATES)
        out.append(_chain(work[i : i + 1], sample_generator, rate, first_resize, chain))
    return torch.cat(out).to(images.dtype)


def lqseg(images: torch.Tensor, level: int, generator: GeneratorArg = None) -> torch.Tensor:
    """LQSeg's test-set chain at LQ-`level` (1..3: downsampling rate 1, 2, 4) on (B, 3, H, W) images in
    [0, 1], any device; same shape, device and dtype. `generator` follows `degrade`'s per-sample contract.

    Not in DEGRADATIONS: RobustSAM training draws uniformly from that registry; `robustsam degrade`
    writes these as the types LQ-1, LQ-2, LQ-3 (LQSEG_TYPES)."""
    if level not in LQSEG_RATES:
        raise ValueError(f"lqseg has levels 1..3 (LQ-1..LQ-3), got {level}")
    return _run(images, generator, LQSEG_RATES[level], TEST_FIRST_RESIZE)


def lqseg_training(images: torch.Tensor, generator: GeneratorArg = None, level: Optional[int] = None,
                   chain: str = "released") -> torch.Tensor:
    """LQSeg's training chain (`chain` "released": as GleSAM's loader runs it; "yaml": its YAML's second
    kernel), the rate drawn per sample from TRAINING_RATES, or that of `level` (1..3)."""
    if level is not None and level not in LQSEG_RATES:
        raise ValueError(f"lqseg has levels 1..3 (LQ-1..LQ-3), got {level}")
    if chain not in LQSEG_CHAINS:
        raise ValueError(f"LQSeg training chains are {', '.join(LQSEG_CHAINS)}, not {chain!r}")
    return _run(images, generator, None if level is None else LQSEG_RATES[level], TRAIN_FIRST_RESIZE, chain)

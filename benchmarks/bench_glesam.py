"""GleSAM's per-image overhead (the enhancer's one U-Net step) against RobustSAM's (the robust image
feature) and plain `set_image`, on vit_b-sized latents (256 x 64 x 64).

The U-Net has Stable Diffusion 2.1-base's configuration (865M parameters: blocks 320/640/1280/1280,
two layers per block, linear projections, 1024-wide cross-attention on a 77-token context) with
random weights, read and written with 256 channels as GleSAM's channel replication makes it, and
LoRA rank 8 on GleSAM's target modules (unmerged, as GleSamPredictor runs it). SAM is vit_b with
the synthetic weights of the released key names. Per round, interleaved so that all three share
the machine's load: `set_image` on SAM's path, the robust image feature alone, the enhancer step
alone; medians over --repeats rounds after one warm-up, which also counts each one's FLOPs (as
executed: fused attention, Winograd robust blocks), a load-independent ratio. `--unet small` swaps in the small U-Net of
the miniature (`core.glesam.small_unet_config`) for a quick run.

    OMP_NUM_THREADS=1 python3 benchmarks/bench_glesam.py [--repeats 3] [--unet sd21|small] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_predictor import synthetic_model, test_image, timed  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

from core import RobustPredictor  # noqa: E402
from core.glesam import PUBLISHED_LORA, LatentEnhancer, add_lora, small_unet_config  # noqa: E402

# stabilityai/stable-diffusion-2-1-base, unet/config.json (the architecture fields)
SD21_BASE: dict[str, Any] = {
    "sample_size": 64,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
CONTEXT_TOKENS = 77  # CLIP's context length: GleSAM conditions on the embedding of the empty prompt


def enhancer(kind: str, channels: int, size: int, device: torch.device) -> tuple[LatentEnhancer, int]:
    """The enhancer for `channels` x `size` x `size` embeddings, and its U-Net's base parameter count."""
    config = dict(SD21_BASE) if kind == "sd21" else small_unet_config(sample_size=size)
    config.update(in_channels=channels, out_channels=channels)
    unet = UNet2DConditionModel.from_config(config)
    count = sum(p.numel() for p in unet.parameters())
    add_lora(unet, PUBLISHED_LORA["rank"], PUBLISHED_LORA["alpha"])
    tokens = CONTEXT_TOKENS if kind == "sd21" else 1
    context = torch.zeros(1, tokens, unet.config.cross_attention_dim)
    return LatentEnhancer(unet, context=context).to(device).eval(), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unet", choices=("sd21", "small"), default="sd21")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = synthetic_model("vit_b", args.device)
    predictor = RobustPredictor(model, robust=False, exact_sam=False)
    step, parameters = enhancer(args.unet, model.config.prompt_embed_dim, model.config.embedding_size, device)
    image = test_image()
    predictor.set_image(image)
    embedding, early = predictor.features, predictor.early_features

    @torch.inference_mode()
    def robust_feature() -> None:
        model.mask_decoder.image_feature(embedding, early)

    @torch.inference_mode()
    def enhance() -> None:
        step(embedding)

    runs = {"set_image (SAM path)": lambda: predictor.set_image(image), "RobustSAM robust feature": robust_feature,
            "GleSAM enhancer step": enhance}
    flops = {}
    for name, run in runs.items():  # the warm-up counts the work as executed (Winograd, fused attention)
        with FlopCounterMode(display=False) as counter:
            timed(run, device)
        flops[name] = counter.get_total_flops()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    load = os.getloadavg()
    for _ in range(args.repeats):
        for name, run in runs.items():
            seconds[name].append(timed(run, device)[0])
    median = {name: statistics.median(values) for name, values in seconds.items()}
    base = median["set_image (SAM path)"]
    print(f"vit_b, embedding {tuple(embedding.shape)}, U-Net {args.unet} ({parameters / 1e6:.0f}M parameters, LoRA rank "
          f"{PUBLISHED_LORA['rank']}), {args.device}, {torch.get_num_threads()} threads, {args.repeats} repeats, "
          f"load average {load[0]:.1f}")
    print("| per image | seconds | x set_image | set_image + this, x set_image | GFLOP | x set_image GFLOP |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, value in median.items():
        total = value if name.startswith("set_image") else base + value
        print(f"| {name} | {value:.3f} | {value / base:.2f} | {total / base:.2f} | {flops[name] / 1e9:.0f} | "
              f"{flops[name] / flops['set_image (SAM path)']:.2f} |")
    glesam, robust = "GleSAM enhancer step", "RobustSAM robust feature"
    print(f"GleSAM's overhead / RobustSAM's: {median[glesam] / median[robust]:.1f}x in time, {flops[glesam] / flops[robust]:.1f}x in FLOPs")


if __name__ == "__main__":
    main()

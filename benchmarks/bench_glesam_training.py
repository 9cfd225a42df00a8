"""The cost of one iteration of GleSAM's stage one with the released objective (train.glesam_guidance:
the generator's update on every 5th iteration, the guidance update on every one) against the MSE-only
step, at Stable Diffusion 2.1-base size: three U-Nets of SD 2.1-base's configuration (865M parameters
each, read and written with 256 channels as channel replication makes them, random weights; LoRA rank 8
on the generator and the fake score; the real score frozen), the classifier branch on the 1280 x 8 x 8
bottleneck, a vit_b/vit_l-sized embedding (256 x 64 x 64), batch 1 as released, a 77-token context.

Counted per update: the MSE-only step (the enhancer's forward and backward); the generator's update
(+ distribution matching: the real and fake scores' forward; + the GAN term: the fake score's down path
forward and backward to the generator); the guidance update (the fake score's denoising forward and
backward, the classifier on clear and enhanced embeddings); a guidance-only iteration's enhancer forward
without gradients. An iteration of the released objective averages 1 generator iteration and 4 others.
SAM's encoder (the same in both) is left out. `--device meta` (the default) counts FLOPs only, on
weights that take no memory; on a real device each update is also timed (median of --repeats after a
warm-up). `--unet small` swaps in the miniature's U-Net for a quick real run.

    python3 benchmarks/bench_glesam_training.py [--unet sd21|small] [--device meta|cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_glesam import CONTEXT_TOKENS, SD21_BASE  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

from core.glesam import PUBLISHED_LORA, LatentEnhancer, add_lora, small_unet_config  # noqa: E402
from train.glesam import GeneratorStep  # noqa: E402
from train.glesam_guidance import GENERATOR_EVERY, Guidance  # noqa: E402

CHANNELS, SIZE = 256, 64  # SAM's embedding (vit_b and vit_l alike)


def networks(kind: str, device: torch.device) -> tuple[LatentEnhancer, Guidance]:
    """The generator (LoRA on a frozen base) and its guidance networks, on `device` (meta: no memory)."""
    config = dict(SD21_BASE) if kind == "sd21" else small_unet_config(sample_size=SIZE)
    config.update(in_channels=CHANNELS, out_channels=CHANNELS)
    with torch.device("meta" if device.type == "meta" else "cpu"):
        unet = UNet2DConditionModel.from_config(config)
        add_lora(unet, PUBLISHED_LORA["rank"], PUBLISHED_LORA["alpha"])
    tokens = CONTEXT_TOKENS if kind == "sd21" else 1
    enhancer = LatentEnhancer(unet, context=torch.zeros(1, tokens, unet.config.cross_attention_dim))
    guidance = Guidance(enhancer, SIZE, train_base=False)
    guidance.requires_grad_(False)
    for _, parameter in guidance.trainable():
        parameter.requires_grad_(True)
    return enhancer.to(device).eval(), guidance.to(device).eval()


def updates(enhancer: LatentEnhancer, guidance: Guidance, device: torch.device) -> dict[str, Callable[[], None]]:
    """Each update's work (forward and backward), on random embeddings."""
    low, high = torch.randn(1, CHANNELS, SIZE, SIZE, device=device), torch.randn(1, CHANNELS, SIZE, SIZE, device=device)
    weight, generator = enhancer.feature_weight, GeneratorStep(enhancer, guidance)
    trainable = [p for _, p in guidance.trainable()]

    def mse_step() -> None:
        torch.nn.functional.mse_loss(enhancer.scaled_x0(low), high * weight).backward()

    def generator_update() -> None:
        for parameter in trainable:
            parameter.requires_grad_(False)
        generator(low, high)["loss"].backward()
        for parameter in trainable:
            parameter.requires_grad_(True)

    def enhancer_forward() -> None:
        with torch.no_grad():
            enhancer.scaled_x0(low)

    def guidance_update() -> None:
        with torch.no_grad():
            generated = enhancer.scaled_x0(low)
        guidance(generated, high * weight)["guidance_loss"].backward()

    return {"MSE-only step": mse_step, "generator update": generator_update,
            "enhancer forward (no gradients)": enhancer_forward, "guidance update": guidance_update}


def measure(run: Callable[[], None], device: torch.device, repeats: int) -> tuple[float, float]:
    """(FLOPs, median seconds; NaN on meta) of `run`."""
    with FlopCounterMode(display=False) as counter:
        run()
    if device.type == "meta":
        return counter.get_total_flops(), float("nan")
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return counter.get_total_flops(), statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", choices=("sd21", "small"), default="sd21")
    parser.add_argument("--device", default="meta")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    enhancer, guidance = networks(args.unet, device)
    results = {name: measure(run, device, args.repeats) for name, run in updates(enhancer, guidance, device).items()}
    flops = {name: value[0] for name, value in results.items()}
    seconds = {name: value[1] for name, value in results.items()}
    others = GENERATOR_EVERY - 1
    rows = {
        "MSE-only step": ("MSE-only step",),
        "released, generator iteration": ("generator update", "guidance update"),
        "released, other iteration": ("enhancer forward (no gradients)", "guidance update"),
    }
    totals = {row: (sum(flops[p] for p in parts), sum(seconds[p] for p in parts)) for row, parts in rows.items()}
    generator_row, other_row = totals["released, generator iteration"], totals["released, other iteration"]
    totals["released, mean iteration"] = tuple((g + others * o) / GENERATOR_EVERY for g, o in zip(generator_row, other_row))
    base_flops, base_seconds = totals["MSE-only step"]
    parameters = sum(p.numel() for name, p in enhancer.unet.named_parameters() if ".lora_" not in name)
    shown = lambda value: "-" if value != value else f"{value:.3f}"  # noqa: E731 (NaN: not timed on meta)
    ratio = lambda value: "-" if value != value else f"{value:.2f}"  # noqa: E731
    print(f"U-Net {args.unet} ({parameters / 1e6:.0f}M base parameters, x3), embedding {CHANNELS}x{SIZE}x{SIZE}, batch 1, "
          f"{args.device}, {torch.get_num_threads()} threads")
    print("| per update | GFLOP | x MSE-only step | seconds | x MSE-only step |")
    print("|---|---:|---:|---:|---:|")
    for name in results:
        print(f"| {name} | {flops[name] / 1e9:.0f} | {flops[name] / base_flops:.2f} | {shown(seconds[name])} | "
              f"{ratio(seconds[name] / base_seconds)} |")
    print("| per iteration | GFLOP | x MSE-only step | seconds | x MSE-only step |")
    print("|---|---:|---:|---:|---:|")
    for name, (value, time_s) in totals.items():
        print(f"| {name} | {value / 1e9:.0f} | {value / base_flops:.2f} | {shown(time_s)} | {ratio(time_s / base_seconds)} |")


if __name__ == "__main__":
    main()

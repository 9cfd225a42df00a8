"""Images/s of `robustsam segment`'s pipeline writing each image's masks behind the next image's
segmentation (the default) against waiting for them (`SegmentRun.write_behind = False`), in one run.

Same model, images, boxes and output format for both; the two variants alternate run by run and each
timing is the median of `--repeats`, so load from other processes hits both alike.

    python3 benchmarks/bench_write_behind.py --checkpoint default --images 8 --prompts 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_segment import make_inputs  # noqa: E402
from core.inference.loading import open_model  # noqa: E402
from core.inference.segment import prepare_run  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT, is_default_name  # noqa: E402


def time_run(model, folder: Path, prompts: Path, output: Path, output_format: str, write_behind: bool) -> float:
    run = prepare_run(model, [folder], output, prompts=prompts, output_format=output_format)
    run.write_behind = write_behind
    start = time.perf_counter()
    summary = run.run()
    assert not summary.failures, summary.failures
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="default", help="`default` (the built-in model) or a checkpoint path")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--prompts", type=int, default=16, help="box prompts per image")
    parser.add_argument("--format", default="png", help="segment's --format")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    checkpoint = DEFAULT_CHECKPOINT if is_default_name(args.checkpoint) else Path(args.checkpoint)
    model = open_model(checkpoint, device=args.device)
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prompts = make_inputs(root / "images", args.images, args.height, args.width, args.prompts)
        (root / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
        time_run(model, root / "images", root / "prompts.json", root / "warm", args.format, True)
        for repeat in range(args.repeats):
            for write_behind in (False, True):
                times[write_behind].append(time_run(model, root / "images", root / "prompts.json", root / f"{write_behind}-{repeat}",
                                                    args.format, write_behind))
    plain, behind = (args.images / statistics.median(times[flag]) for flag in (False, True))
    print(f"{args.checkpoint} on {args.device} (torch threads {torch.get_num_threads()}), {args.images} images "
          f"{args.width}x{args.height}, {args.prompts} boxes each, --format {args.format}, median of {args.repeats}")
    print(f"{'writes':>16} {'images/s':>9}")
    print(f"{'waited for':>16} {plain:>9.3f}")
    print(f"{'behind (default)':>16} {behind:>9.3f}")
    print(f"speed-up {behind / plain:.2f}x")


if __name__ == "__main__":
    main()

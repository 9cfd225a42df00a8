"""Peak memory of `robustsam track` against video length: the same 480p clip at two lengths (300
and 3000 frames by default) tracked with the micro SAM 2 (synthetic weights, one object), each in
its own process, against SAM 2's own way in the same run: `init_state` on the frame folder, which
reads every frame into one tensor before tracking starts.

    python3 benchmarks/bench_video_memory.py --frames 300 3000

Peak memory is the process's maximum resident set (ru_maxrss); a flat profile is a ratio near 1
between the lengths. SAM 2's own loading is measured up to the end of `init_state` only (it is
the part that grows; its tracking would add the memory features we drop).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = (480, 854)
MICRO = "sam2.1_hiera_micro"


def frame(index: int) -> np.ndarray:
    height, width = SIZE
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[:, :, 2] = np.linspace(0, 160, width, dtype=np.uint8)[None]
    x = (40 + 2 * index) % (width - 120)
    image[180:300, x : x + 120] = 230
    return image


def measure(kind: str, video: str, checkpoint: str) -> None:
    """Runs in a child: tracks (ours) or loads (SAM 2's own), prints JSON with the peak RSS."""
    import torch

    from core.video import load_video_prompts, open_source
    from core.video.tracking import load_video_predictor, track

    torch.set_num_threads(1)
    predictor = load_video_predictor(checkpoint, MICRO)
    started = time.perf_counter()
    frames = 0
    if kind == "ours":
        with open_source(video) as source:
            prompts = load_video_prompts(Path(video).parent / "prompts.json").for_video(source)
            for _ in track(predictor, source, prompts):
                frames += 1
    else:
        state = predictor.init_state(video, offload_video_to_cpu=True)
        frames = state["num_frames"]
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--child", nargs=3, metavar=("KIND", "VIDEO", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from core.io import write_image
    from core.sam2 import get_sam2_config
    from core.video import write_video

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        config = get_sam2_config(MICRO)
        torch.manual_seed(0)
        model = build_sam2_video_predictor(config.config_file, None, device="cpu", hydra_overrides_extra=list(config.overrides))
        checkpoint = work / "micro.pt"
        torch.save(model.state_dict(), checkpoint)
        rows = []
        for count in args.frames:
            folder = work / f"clip{count}"
            folder.mkdir()
            write_video(folder / "clip.mp4", (frame(i) for i in range(count)), fps=24)
            (folder / "prompts.json").write_text(json.dumps({"clip.mp4": [{"frame": 0, "obj_id": 1, "box": [40, 180, 160, 300]}]}))
            for i in range(count):  # SAM 2's own loader reads JPEG folders
                write_image(folder / "jpg" / f"{i:05d}.jpg", frame(i))
            for kind, video in (("ours", folder / "clip.mp4"), ("sam2_init_state", folder / "jpg")):
                child = subprocess.run([sys.executable, __file__, "--child", kind, str(video), str(checkpoint)],
                                       capture_output=True, text=True, cwd=ROOT, check=True)
                rows.append((kind, count, json.loads(child.stdout.strip().splitlines()[-1])))
                print(kind, count, rows[-1][2], flush=True)
    print("\n| run | frames | peak MB | x shortest | seconds | frames/s |\n|---|---:|---:|---:|---:|---:|")
    for kind, count, result in rows:
        base = next(r for k, c, r in rows if k == kind and c == min(args.frames))
        print(f"| {kind} | {count} | {result['peak_mb']:.0f} | {result['peak_mb'] / base['peak_mb']:.2f} | "
              f"{result['seconds']:.1f} | {result['frames'] / result['seconds']:.2f} |")


if __name__ == "__main__":
    main()

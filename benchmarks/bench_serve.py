"""robustsam serve: click-to-mask round trip over HTTP after the first embedding, against the decoder alone.

For each model (the built-in one on examples/images/fog.png; vit_b with the deterministic synthetic
weights of the released key names on a 768x1024 image) and each path (RobustSAM's, SAM's), one run:
  * starts the real server on a free loopback port and times the first embedding (POST /api/embed);
  * sends --requests POST /api/predict with random boxes, one after another on one keep-alive
    connection, timing each round trip at the client and reading the server's own decode time;
  * decodes the same boxes in the same process without HTTP (Workbench.decode), the baseline;
and prints p50/p95 of each, the decoder's share of the round trip and the round trip / baseline ratio,
and the process's CPU time per round trip and per decode alone (client and server share the process),
which the other jobs on a shared machine change far less than the wall time.

Run: python3 benchmarks/bench_serve.py [--requests 100] [--no-vit-b]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import RobustSam, get_config  # noqa: E402
from core.data.prompt_files import Prompt  # noqa: E402
from core.inference import make_predictor, open_model  # noqa: E402
from core.model.checkpoint import expected_shapes  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402
from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402
from serve import BackgroundServer, ImageFolder, Workbench, create_app  # noqa: E402
from serve.images import CLEAR  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "fog.png"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def random_boxes(count: int, width: int, height: int, seed: int = 0) -> list[list[int]]:
    """Boxes of 10-50% of the image's sides, anywhere inside it."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(count):
        w, h = (rng.uniform(0.1, 0.5) * np.array([width, height])).astype(int) + 1
        x0, y0 = rng.integers(0, width - w), rng.integers(0, height - h)
        boxes.append([int(x0), int(y0), int(x0 + w), int(y0 + h)])
    return boxes


def measure(label: str, model: RobustSam, folder: Path, key: str, requests: int) -> list[str]:
    """Rows of the table for both paths of `model` on image `key` of `folder`."""
    predictors = {"robust": make_predictor(model, robust=True), "sam": make_predictor(model, robust=False)}
    bench = Workbench(ImageFolder(folder), predictors)
    width, height = Image.open(folder / key).size
    boxes = random_boxes(requests, width, height)
    rows = []
    with BackgroundServer(create_app(bench, checkpoint=label, replay={})) as server, httpx.Client(base_url=server.url, timeout=600) as client:
        for path in predictors:
            start = time.perf_counter()
            client.post("/api/embed", json={"image": key, "model": path}).raise_for_status()
            embed = time.perf_counter() - start
            round_trips, round_trip_cpu, decoder = [], [], []
            for box in boxes:
                start, cpu = time.perf_counter(), time.process_time()
                answer = client.post("/api/predict", json={"image": key, "model": path, "box": box})
                round_trips.append(time.perf_counter() - start)
                round_trip_cpu.append(time.process_time() - cpu)
                decoder.append(answer.json()["seconds"])
            alone, alone_cpu = [], []
            for box in boxes:
                start, cpu = time.perf_counter(), time.process_time()
                bench.decode(path, key, CLEAR, [Prompt(box=tuple(float(v) for v in box))])
                alone.append(time.perf_counter() - start)
                alone_cpu.append(time.process_time() - cpu)
            p50, p95 = percentile(round_trips, 50) * 1e3, percentile(round_trips, 95) * 1e3
            d50, d95 = percentile(decoder, 50) * 1e3, percentile(decoder, 95) * 1e3
            a50 = statistics.median(alone) * 1e3
            c50, ca50 = statistics.median(round_trip_cpu) * 1e3, statistics.median(alone_cpu) * 1e3
            rows.append(f"| {label} | {path} | {width}x{height} | {embed:.2f} | {p50:.1f} | {p95:.1f} | {d50:.1f} | {d95:.1f} | "
                        f"{d50 / p50:.0%} | {a50:.1f} | {p50 / a50:.2f}x | {c50:.1f} | {ca50:.1f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--no-vit-b", action="store_true", help="Only the built-in model.")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.requests} requests per path")
    print("| model | path | image | first embed s | round trip p50 ms | p95 ms | server decode p50 ms | p95 ms | "
          "decoder share (p50) | decode alone p50 ms | round trip / alone | CPU ms per round trip (p50) | CPU ms per decode alone |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        Image.open(EXAMPLE).save(folder / "small.png")
        measure("built-in (vit_micro_p8)", open_model(DEFAULT_CHECKPOINT), folder, "small.png", args.requests)
        if not args.no_vit_b:
            Image.open(EXAMPLE).convert("RGB").resize((1024, 768), Image.BICUBIC).save(folder / "large.png")
            model = RobustSam(get_config("vit_b"), "vit_b")
            model.load_state_dict(synthetic_state_dict(expected_shapes("vit_b")))
            measure("vit_b (synthetic weights)", model.eval(), folder, "large.png", args.requests)


if __name__ == "__main__":
    main()

"""The GPU suite: every CUDA path run, throughput and memory for every model and precision, in one call.

On the first CUDA device, in this order (the rows that matter most come first, so that a spent
--budget-s cuts the least important; rows not reached are written as absent, with the reason):
  1. the test suite's CUDA tests (`pytest -m cuda` on the files that use the marker): pass/fail counts;
  2. CUDA against CPU (vit_b, synthetic weights): relative error of logits and IoU on both paths in
     fp32/bf16/fp16, against the limits the tests use;
  3. images/s of `set_image` and prompts/s of decoding 16 boxes at batch 1 for vit_b, vit_l, vit_h
     (synthetic weights with the released key names), robust path, our SAM path and
     segment_anything.SamPredictor (the reference, under the same autocast), fp32/bf16/fp16;
  4. `robustsam segment` end to end in a child process on 300 generated 1024 px JPEGs with vit_b
     (reading, decoding, writing PNGs included): images/s and GPU utilisation sampled meanwhile;
  5. GleSAM's per-image cost with an SD-2.1-base-sized U-Net: GleSamPredictor against SAM's path;
  6. per precision (bf16, fp16, fp32): torch.compile of vit_l's encoder at batch 1 (compilation and
     warm-up untimed), the best image batch of every model and path (doubling while images/s gains
     >= 5%: the predictors' `set_image_batch` where they have it, else the stacked images encoded
     through the model as set_image does), then the other models compiled;
  7. SAM 2 / 2.1 (Hiera-T and Hiera-L, synthetic weights of the real key names): our robust path, our
     SAM 2 path and sam2's own SAM2ImagePredictor, images/s of set_image and prompts/s of decoding.
Each row records peak GPU memory (torch.cuda.max_memory_allocated, reset per row; the row's model
weights included, one model on the device at a time); an out-of-memory row is recorded as absent and
the suite goes on. Timed calls follow warm-up calls and end with a device synchronisation. Writes gpu_suite.json and gpu_suite.md (a table for
docs/performance.md) to --out, and prints the paper-anchor ratios (vit_l robust path in bf16 against
RobustSAM's 2.80 FPS, target 3x; robust/SAM time ratio, target <= 1.1).

`--device cpu --quick` is the dry run the tests run: the same functions on vit_micro (the built-in
model's family), the built-in model itself for `segment`, a small U-Net and torch.compile's eager
backend: about 40 s of CPU time, most of it the two child processes starting.

    python3 benchmarks/gpu_suite.py --out DIR [--budget-s 480] [--device cuda|cpu] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from xml.etree import ElementTree

import imageio.v3 as iio
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_glesam import enhancer  # noqa: E402
from bench_predictor import boxes, segment_anything_sam, synchronize, synthetic_model, test_image  # noqa: E402
from bench_sam2 import prompt_boxes, sam2_predictor  # noqa: E402
from segment_anything import SamPredictor  # noqa: E402

from core import RobustPredictor, RobustSam  # noqa: E402
from core.glesam import GleSam  # noqa: E402
from core.inference import GleSamPredictor  # noqa: E402
from core.io import write_json, write_text  # noqa: E402
from tests.test_parity import REFERENCE_LIMIT  # noqa: E402
from tests.test_predictor import LOW_PRECISION_LIMIT, relative_error  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PATHS = ("robust", "sam", "segment_anything")
PROMPTS = 16  # boxes decoded together: segment's --prompt-batch default
BATCH_GAIN = 1.05  # the batch search doubles while images/s grows by at least this factor
PAPER_ROBUST_FPS, PAPER_SAM_FPS = 2.80, 2.90  # RobustSAM's paper, its GPU (memory figures fit ViT-L)
TARGET_SPEEDUP, TARGET_TIME_RATIO = 3.0, 1.1
SAM2_PATHS = ("robust", "sam", "SAM2ImagePredictor")


@dataclass(frozen=True)
class Plan:
    """What one run measures."""

    models: tuple[str, ...]
    precisions: tuple[str, ...]  # of the batch-1 rows
    image_shape: tuple[int, int]  # (height, width) of the test image
    repeats: int  # timed calls per measurement, at most
    timed_s: float  # ... or fewer (two at least) once they have taken this long
    warmups: int  # untimed calls before them (compiled rows: warmups + 2)
    max_batch: int
    late_precisions: tuple[str, ...]  # of the batch and compiled rows, most important first
    compile_backend: str
    compile_reserve_s: float  # a compiled row starts only with this much budget left
    anchor_model: str
    glesam_model: str
    glesam_unet: str  # bench_glesam's U-Net: "sd21" or "small"
    glesam_precisions: tuple[str, ...]
    segment_images: int
    segment_size: int
    segment_precision: str
    segment_checkpoint: str  # "synthetic vit_b", or a checkpoint name segment takes ("default")
    sam2_models: tuple[str, ...]
    sam2_size: int  # SAM 2's input side (1024 released)
    sam2_precisions: tuple[str, ...]


FULL = Plan(models=("vit_b", "vit_l", "vit_h"), precisions=PRECISIONS, image_shape=(768, 1024), repeats=10, timed_s=3.0,
            warmups=2, max_batch=32, late_precisions=("bf16", "fp16", "fp32"), compile_backend="inductor",
            compile_reserve_s=120.0, anchor_model="vit_l", glesam_model="vit_b",
            glesam_unet="sd21", glesam_precisions=("bf16", "fp32"), segment_images=300, segment_size=1024,
            segment_precision="bf16", segment_checkpoint="synthetic vit_b",
            sam2_models=("sam2.1_hiera_t", "sam2.1_hiera_l"), sam2_size=1024, sam2_precisions=("bf16", "fp32"))
# CPUs run bf16 and fp16 slowly: beyond the bf16 batch-1 rows (the anchor's), the dry run stays in fp32.
QUICK = Plan(models=("vit_micro",), precisions=("fp32", "bf16"), image_shape=(96, 128), repeats=2, timed_s=1.0,
             warmups=1, max_batch=4, late_precisions=("fp32",), compile_backend="eager",
             compile_reserve_s=0.0, anchor_model="vit_micro", glesam_model="vit_micro", glesam_unet="small",
             glesam_precisions=("fp32",), segment_images=2, segment_size=128, segment_precision="fp32",
             segment_checkpoint="default", sam2_models=("sam2.1_hiera_t",), sam2_size=128, sam2_precisions=("fp32",))


class Budget:
    """Wall-clock seconds left for new rows."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]


# ---- measuring -------------------------------------------------------------------------------------


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def rate(run: Callable[[], object], items: int, device: torch.device, plan: Plan, warmups: int) -> tuple[float, float]:
    """(items per second over the timed calls of `run`, seconds of the `warmups` untimed calls before them).
    The timed calls stop at plan.repeats, or at two once they have taken plan.timed_s."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(warmups):
        run()
    synchronize(device)
    warm = time.perf_counter() - start
    calls, start = 0, time.perf_counter()
    while calls < plan.repeats and (calls < 2 or time.perf_counter() - start < plan.timed_s):
        run()
        calls += 1
        synchronize(device)  # each call completes before the clock is read
    return items * calls / (time.perf_counter() - start), warm


def open_path(path: str, model: RobustSam, precision: str) -> tuple[SamPredictor, Callable[[], contextlib.AbstractContextManager]]:
    """The predictor of `path` on `model`'s weights, and the context its calls run in: ours autocast
    themselves; segment_anything's SamPredictor runs under the same autocast from outside."""
    if path == "segment_anything":
        return SamPredictor(segment_anything_sam(model)), lambda: autocast(model.device, precision)
    # Our SAM path on the same fused encoder as the robust path: the ratio is the robust modules' cost.
    return RobustPredictor(model, robust=path == "robust", precision=precision, exact_sam=False), contextlib.nullcontext


def single_image(path: str, model: RobustSam, precision: str, plan: Plan, warmups: int) -> dict[str, float]:
    """images/s of set_image and prompts/s of decoding PROMPTS boxes on the set image."""
    predictor, context = open_path(path, model, precision)
    image = test_image(*plan.image_shape)
    with context():
        images_per_s, warmup_s = rate(lambda: predictor.set_image(image), 1, model.device, plan, warmups)
        prompts = boxes(predictor, PROMPTS)
        prompts_per_s, _ = rate(lambda: predictor.predict_torch(None, None, prompts), PROMPTS, model.device, plan, 1)
    return {"images_per_s": images_per_s, "prompts_per_s": prompts_per_s, "warmup_s": warmup_s}


@torch.inference_mode()
def encode_stacked(predictor: SamPredictor, images: list[np.ndarray], precision: str) -> None:
    """What set_image does, for a stack of images in one forward: resize, normalise and pad, encode
    (and on the robust path, the robust image feature)."""
    model = predictor.model
    resized = [torch.as_tensor(predictor.transform.apply_image(image)) for image in images]
    stack = torch.stack(resized).permute(0, 3, 1, 2).contiguous().to(predictor.device)
    with autocast(predictor.device, precision):
        batch = model.preprocess(stack)
        if not isinstance(predictor, RobustPredictor):
            model.image_encoder(batch)
            return
        features, early = model.encode(batch)
        if predictor.robust:
            model.mask_decoder.image_feature(features, early)


def image_batch(path: str, model: RobustSam, precision: str, batch: int, plan: Plan) -> dict[str, Any]:
    """images/s encoding `batch` images at once: the predictor's set_image_batch where it has one."""
    predictor, context = open_path(path, model, precision)
    images = [test_image(*plan.image_shape)] * batch
    if hasattr(predictor, "set_image_batch"):
        how, run = "set_image_batch", lambda: predictor.set_image_batch(images)
    else:
        how, run = "stacked encode", lambda: encode_stacked(predictor, images, precision)
    with context():
        images_per_s, warmup_s = rate(run, batch, model.device, plan, plan.warmups)
    return {"images_per_s": images_per_s, "warmup_s": warmup_s, "how": how}


def sam2_single_image(model_type: str, path: str, precision: str, plan: Plan, device: torch.device) -> dict[str, float]:
    """images/s of set_image and prompts/s of decoding PROMPTS boxes (pixels of the image) with SAM 2."""
    predictor, context = sam2_predictor(model_type, path, precision, plan.sam2_size, device)
    image = test_image(*plan.image_shape)
    corners = prompt_boxes(image, PROMPTS)
    with context(), torch.inference_mode():
        images_per_s, warmup_s = rate(lambda: predictor.set_image(image), 1, device, plan, plan.warmups)
        prompts_per_s, _ = rate(lambda: predictor.predict(box=corners, multimask_output=False), PROMPTS, device, plan, 1)
    return {"images_per_s": images_per_s, "prompts_per_s": prompts_per_s, "warmup_s": warmup_s}


@contextlib.contextmanager
def compiled_encoder(model: RobustSam, backend: str) -> Iterator[None]:
    """`model.encode` replaced by its torch.compile'd version (what set_image and the batches call)."""
    model.encode = torch.compile(model.encode, backend=backend)  # the instance attribute shadows the method
    try:
        yield
    finally:
        del model.encode
        torch._dynamo.reset()  # frees the compiled graphs before the next row


def glesam_cost(model: RobustSam, step: torch.nn.Module, precision: str, plan: Plan) -> dict[str, float]:
    """images/s of GleSamPredictor.set_image (encoder + enhancer step) against SAM's path on the same encoder."""
    image = test_image(*plan.image_shape)
    sam = RobustPredictor(model, robust=False, precision=precision, exact_sam=False)
    glesam = GleSamPredictor(GleSam(model, step), precision=precision)
    sam_rate, _ = rate(lambda: sam.set_image(image), 1, model.device, plan, plan.warmups)
    glesam_rate, warmup_s = rate(lambda: glesam.set_image(image), 1, model.device, plan, plan.warmups)
    return {"images_per_s": glesam_rate, "sam_images_per_s": sam_rate, "time_vs_sam": sam_rate / glesam_rate,
            "warmup_s": warmup_s}


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """float32 matrix products and convolutions without TF32 rounding (as the CUDA tests run)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def device_agreement(model_type: str, device: torch.device, plan: Plan) -> dict[str, Any]:
    """Relative error of the low-res logits and IoU scores of one box, `device` in each precision
    against the CPU in float32, on both paths; limits as in tests/test_predictor.py."""
    cpu_model = synthetic_model(model_type, "cpu")
    device_model = copy.deepcopy(cpu_model).to(device)
    image = test_image(*plan.image_shape)
    box = np.array([0.1, 0.2, 0.7, 0.9]) * np.array([plan.image_shape[1], plan.image_shape[0]] * 2)
    checks = {}
    with no_tf32():
        for robust, path in ((True, "robust"), (False, "sam")):
            expected = RobustPredictor(cpu_model, robust=robust, exact_sam=False)
            expected.set_image(image)
            _, expected_iou, expected_logits = expected.predict(box=box, return_logits=True)
            for precision in PRECISIONS:
                actual = RobustPredictor(device_model, robust=robust, precision=precision, exact_sam=False)
                actual.set_image(image)
                _, iou, logits = actual.predict(box=box, return_logits=True)
                limit = REFERENCE_LIMIT if precision == "fp32" else LOW_PRECISION_LIMIT
                errors = {"logits": relative_error(logits, expected_logits), "iou": relative_error(iou, expected_iou)}
                checks[f"{path}/{precision}"] = {**errors, "limit": limit, "within": max(errors.values()) < limit}
    return {"checks": checks, "all_within": all(check["within"] for check in checks.values())}


def cuda_tests(budget: Budget) -> dict[str, Any]:
    """`pytest -m cuda` in a child process on the test files that use the marker; counts from its JUnit report."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                   f"--junitxml={report}", *files]
        done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=max(budget.left(), 1.0))
        if not report.is_file():
            raise RuntimeError(f"pytest exited {done.returncode} without a report: {last_line(done.stdout + done.stderr)}")
        suites = list(ElementTree.parse(report).getroot().iter("testsuite"))
        failures = [f"{case.get('classname')}::{case.get('name')}" for suite in suites for case in suite.iter("testcase")
                    if case.find("failure") is not None or case.find("error") is not None]
    count = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    return {"files": files, "exit_code": done.returncode, "passed": count["tests"] - count["failures"] - count["errors"]
            - count["skipped"], "failed": count["failures"] + count["errors"], "skipped": count["skipped"],
            "failed_tests": failures}


def child_env() -> dict[str, str]:
    """This process's environment, with this checkout first on the import path of child processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def utilization_reader(device: torch.device) -> Optional[tuple[str, Callable[[], float]]]:
    """(source, read) for the device's utilisation in percent: NVML through torch, else nvidia-smi; None
    off CUDA or when neither answers."""
    if device.type != "cuda":
        return None
    try:
        torch.cuda.utilization(device)
        return "nvml", lambda: float(torch.cuda.utilization(device))
    except Exception:  # nvidia-ml-py missing or NVML unavailable: nvidia-smi is the other way in
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-i", uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"]

    def read() -> float:
        return float(subprocess.run(query, check=True, capture_output=True, text=True, timeout=10).stdout.strip())

    try:
        read()
    except (subprocess.SubprocessError, ValueError):
        return None
    return "nvidia-smi", read


class UtilizationSampler:
    """Samples the utilisation every `interval` seconds in a thread while the with-block runs."""

    def __init__(self, device: torch.device, interval: float = 0.5) -> None:
        self.reader = utilization_reader(device)
        self.interval = interval
        self.samples: list[float] = []
        self.failure = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self.reader[1]())
            except Exception as error:  # a failed query ends the sampling, not the row
                self.failure = f"{type(error).__name__}: {first_line(str(error))}"
                return

    def __enter__(self) -> "UtilizationSampler":
        if self.reader is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        if self.reader is None:
            return {"gpu_utilization_mean": None, "gpu_utilization_max": None, "utilization_source": "not available"}
        source = f"{self.reader[0]}, {len(self.samples)} samples" + (f", stopped by {self.failure}" if self.failure else "")
        if not self.samples:
            return {"gpu_utilization_mean": None, "gpu_utilization_max": None, "utilization_source": source}
        return {"gpu_utilization_mean": statistics.fmean(self.samples), "gpu_utilization_max": max(self.samples),
                "utilization_source": source}


def scene_image(index: int, size: int) -> np.ndarray:
    """A size x size RGB image: a gradient with two discs placed by `index`."""
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.stack([xx, yy, (xx + yy) / 2], axis=-1) * 200
    for centre, colour in zip(rng.uniform(0.2, 0.8, (2, 2)), rng.integers(0, 255, (2, 3))):
        image[(xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < 0.02] = colour
    return image.astype(np.uint8)


def segment_end_to_end(work: Path, device: torch.device, plan: Plan, budget: Budget) -> dict[str, Any]:
    """`robustsam segment` on generated JPEGs with two box prompts each, in a child process (reading,
    encoding, decoding, writing included): images/s over the command's wall time, GPU utilisation."""
    images, output = work / "images", work / "masks"
    images.mkdir(parents=True)
    size, prompts = plan.segment_size, {}
    for index in range(plan.segment_images):
        iio.imwrite(images / f"{index:04d}.jpg", scene_image(index, size), quality=90)
        prompts[f"{index:04d}.jpg"] = [{"box": [0.1 * size, 0.1 * size, 0.6 * size, 0.7 * size]},
                                       {"box": [0.4 * size, 0.3 * size, 0.95 * size, 0.9 * size]}]
    (work / "prompts.json").write_text(json.dumps(prompts))
    checkpoint = plan.segment_checkpoint
    if checkpoint == "synthetic vit_b":
        checkpoint = str(work / "vit_b_synthetic.pth")
        torch.save(synthetic_model("vit_b", "cpu").state_dict(), checkpoint)
    command = [sys.executable, "-m", "robustsam_cli", "segment", str(images), "--prompts", str(work / "prompts.json"),
               "-o", str(output), "--checkpoint", checkpoint, "--device", str(device),
               "--precision", plan.segment_precision]
    with UtilizationSampler(device) as sampler:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=max(budget.left(), 1.0))
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"robustsam segment exited {done.returncode}: {last_line(done.stderr)}")
    written = len(list(output.glob("*/*.png")))
    if written != 2 * plan.segment_images:
        raise RuntimeError(f"robustsam segment wrote {written} masks, expected {2 * plan.segment_images}")
    return {"images_per_s": plan.segment_images / seconds, "peak_gb": None, "wall_s": seconds, "images": plan.segment_images,
            "image_size": size, "masks_written": written, "checkpoint": plan.segment_checkpoint, **sampler.summary()}


# ---- rows -----------------------------------------------------------------------------------------


def peak_gb(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_row(rows: list[dict], budget: Budget, device: torch.device, key: dict[str, Any],
            measure: Callable[[], dict[str, Any]], reserve_s: float = 0.0) -> dict[str, Any]:
    """Appends one row: `key` with what `measure` returns and the peak GPU memory, or absent with the
    reason (budget spent, out of memory, or the error) when it could not be measured."""
    row: dict[str, Any] = {"model": None, "path": None, "precision": None, "batch": None, "compiled": False, **key}
    if budget.left() <= reserve_s:
        row.update(status="absent", reason="budget spent" if reserve_s == 0 else f"under {reserve_s:.0f} s of budget left")
    else:
        release(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        try:
            row.update(measure())
            row.setdefault("peak_gb", peak_gb(device))  # a measure run in a child process says None
            row["status"] = "measured"
        except torch.cuda.OutOfMemoryError:
            row.update(status="absent", reason="out of memory")
        except Exception as error:  # one broken row must not cost the GPU loan: recorded, traced, skipped
            traceback.print_exc()
            row.update(status="absent", reason=f"error: {type(error).__name__}: {first_line(str(error))}")
        row["seconds"] = time.perf_counter() - start
        release(device)
    rows.append(row)
    print(row_line(row), flush=True)
    return row


def best_batch_rows(rows: list[dict], budget: Budget, device: torch.device, key: dict[str, Any],
                    measure: Callable[[int], dict[str, Any]], plan: Plan) -> None:
    """Rows for batch 2, 4, ... while images/s grows by BATCH_GAIN; the fastest is marked best_batch."""
    found: list[dict] = []
    batch = 2
    while batch <= plan.max_batch:
        row = run_row(rows, budget, device, {**key, "batch": batch}, lambda: measure(batch))
        if row["status"] != "measured":
            break
        found.append(row)
        if len(found) > 1 and row["images_per_s"] < found[-2]["images_per_s"] * BATCH_GAIN:
            break
        batch *= 2
    if found:
        max(found, key=lambda r: r["images_per_s"])["best_batch"] = True


class ResidentModels:
    """Synthetic-weight models, each built once; one at a time on the device, so that a row's peak
    memory is its own model's weights and work."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.built: dict[str, RobustSam] = {}
        self.resident: Optional[str] = None

    def __call__(self, model_type: str) -> RobustSam:
        if model_type not in self.built:
            self.built[model_type] = synthetic_model(model_type, "cpu")
        if self.resident != model_type:
            if self.resident is not None:
                self.built[self.resident].to("cpu")
            self.built[model_type].to(self.device)
            self.resident = model_type
        return self.built[model_type]


def compiled_rows(rows: list[dict], budget: Budget, device: torch.device, plan: Plan, model: ResidentModels,
                  model_types: list[str], precision: str) -> None:
    """Batch-1 rows with the encoder compiled, robust and SAM paths; compilation and warm-up untimed."""
    for model_type in model_types:
        for path in ("robust", "sam"):
            def compiled() -> dict[str, Any]:
                with compiled_encoder(model(model_type), plan.compile_backend):
                    return single_image(path, model(model_type), precision, plan, plan.warmups + 2)
            run_row(rows, budget, device, {"kind": "set_image", "model": model_type, "path": path, "precision": precision,
                                           "batch": 1, "compiled": plan.compile_backend}, compiled, plan.compile_reserve_s)


SECTIONS = ("tests", "agreement", "sam", "segment", "glesam", "late", "sam2")


def suite(plan: Plan, device: torch.device, budget: Budget, work: Path, rows: list[dict],
          sections: tuple[str, ...] = SECTIONS) -> None:
    """Appends the rows of `sections` (in SECTIONS' order, most important first) to `rows`."""
    model = ResidentModels(device)
    if "tests" in sections:
        run_row(rows, budget, device, {"kind": "cuda tests"}, lambda: cuda_tests(budget))
    if "agreement" in sections:
        run_row(rows, budget, device, {"kind": "cuda vs cpu", "model": plan.models[0]},
                lambda: device_agreement(plan.models[0], device, plan))
    for model_type in plan.models if "sam" in sections else ():
        for precision in plan.precisions:
            for path in PATHS:
                run_row(rows, budget, device, {"kind": "set_image", "model": model_type, "path": path, "precision": precision,
                                               "batch": 1}, lambda: single_image(path, model(model_type), precision, plan, plan.warmups))
    if "segment" in sections:
        run_row(rows, budget, device, {"kind": "segment", "model": "vit_b" if plan.segment_checkpoint == "synthetic vit_b"
                                       else plan.segment_checkpoint, "path": "robust", "precision": plan.segment_precision},
                lambda: segment_end_to_end(work, device, plan, budget))
    step: list[torch.nn.Module] = []  # the enhancer, built once for every GleSAM row
    for precision in plan.glesam_precisions if "glesam" in sections else ():
        def glesam() -> dict[str, Any]:
            sam = model(plan.glesam_model)
            if not step:
                step.append(enhancer(plan.glesam_unet, sam.config.prompt_embed_dim, sam.config.embedding_size, device)[0])
            return glesam_cost(sam, step[0], precision, plan)
        run_row(rows, budget, device, {"kind": "glesam", "model": plan.glesam_model, "path": f"glesam ({plan.glesam_unet} U-Net)",
                                       "precision": precision, "batch": 1}, glesam)
    step.clear()  # off the device before the next rows
    anchor_first = sorted(plan.models, key=lambda name: name != plan.anchor_model)
    for precision in plan.late_precisions if "late" in sections else ():  # compiling the anchor model, batches, compiling the others
        compiled_rows(rows, budget, device, plan, model, anchor_first[:1], precision)
        for model_type in plan.models:
            for path in PATHS:
                best_batch_rows(rows, budget, device, {"kind": "set_image", "model": model_type, "path": path, "precision": precision},
                                lambda batch: image_batch(path, model(model_type), precision, batch, plan), plan)
        compiled_rows(rows, budget, device, plan, model, anchor_first[1:], precision)
    for model_type in plan.sam2_models if "sam2" in sections else ():
        for precision in plan.sam2_precisions:
            for path in SAM2_PATHS:
                run_row(rows, budget, device, {"kind": "set_image", "model": model_type, "path": path, "precision": precision, "batch": 1},
                        lambda: sam2_single_image(model_type, path, precision, plan, device))


# ---- reporting ------------------------------------------------------------------------------------


def find(rows: list[dict], **key: Any) -> Optional[dict]:
    """The first measured row matching `key`."""
    return next((r for r in rows if r["status"] == "measured" and all(r.get(k) == v for k, v in key.items())), None)


def anchors(rows: list[dict], plan: Plan) -> dict[str, Any]:
    """The paper-anchor ratios at batch 1 without compile in bf16: the robust path's images/s over 2.80
    (target 3x), and robust/SAM time ratios against our SAM path and segment_anything (target <= 1.1)."""
    key = {"kind": "set_image", "model": plan.anchor_model, "precision": "bf16", "batch": 1, "compiled": False}
    robust, sam, reference = (find(rows, **key, path=path) for path in PATHS)
    fastest = max((r for r in rows if r["status"] == "measured" and r["kind"] == "set_image" and r["path"] == "robust"
                   and r["model"] == plan.anchor_model and r["precision"] == "bf16"),
                  key=lambda r: r["images_per_s"], default=None)
    result: dict[str, Any] = {"model": plan.anchor_model, "paper_robust_fps": PAPER_ROBUST_FPS, "paper_sam_fps": PAPER_SAM_FPS,
                              "paper_time_ratio": PAPER_SAM_FPS / PAPER_ROBUST_FPS,
                              "target_speedup": TARGET_SPEEDUP, "target_time_ratio": TARGET_TIME_RATIO}
    if robust is None:
        return {**result, "absent": f"no measured {plan.anchor_model} robust bf16 batch-1 row"}
    result["robust_images_per_s"] = robust["images_per_s"]
    result["speedup"] = robust["images_per_s"] / PAPER_ROBUST_FPS
    if fastest is not None:
        result["fastest_robust"] = {"images_per_s": fastest["images_per_s"], "batch": fastest["batch"],
                                    "compiled": fastest["compiled"], "speedup": fastest["images_per_s"] / PAPER_ROBUST_FPS}
    for name, row in (("time_ratio_vs_our_sam_path", sam), ("time_ratio_vs_segment_anything", reference)):
        result[name] = row["images_per_s"] / robust["images_per_s"] if row else None
    return result


def anchor_lines(anchor: dict[str, Any]) -> list[str]:
    if "absent" in anchor:
        return [f"Paper anchor: absent ({anchor['absent']})."]
    met = {True: "met", False: "not met"}
    lines = [f"Paper anchor, {anchor['model']} robust path, bf16, batch 1: {anchor['robust_images_per_s']:.2f} images/s = "
             f"{anchor['speedup']:.2f}x RobustSAM's {PAPER_ROBUST_FPS} FPS (target >= {TARGET_SPEEDUP:.0f}x: "
             f"{met[anchor['speedup'] >= TARGET_SPEEDUP]})."]
    if "fastest_robust" in anchor:
        fastest = anchor["fastest_robust"]
        lines.append(f"Fastest {anchor['model']} robust bf16 row (batch {fastest['batch']}, compiled: {fastest['compiled']}): "
                     f"{fastest['images_per_s']:.2f} images/s = {fastest['speedup']:.2f}x.")
    for name, against in (("time_ratio_vs_our_sam_path", "our SAM path"), ("time_ratio_vs_segment_anything", "segment_anything")):
        if anchor[name] is not None:
            lines.append(f"Robust/SAM time ratio against {against}: {anchor[name]:.3f} (paper {anchor['paper_time_ratio']:.3f}; "
                         f"target <= {TARGET_TIME_RATIO}: {met[anchor[name] <= TARGET_TIME_RATIO]}).")
    return lines


def number(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def notes(row: dict[str, Any]) -> str:
    if row["status"] != "measured":
        return f"absent: {row['reason']}"
    kind = row["kind"]
    if kind == "cuda tests":
        return f"{row['passed']} passed, {row['failed']} failed, {row['skipped']} skipped" + \
            (f": {', '.join(row['failed_tests'])}" if row["failed_tests"] else "")
    if kind == "cuda vs cpu":
        worst = max(row["checks"].items(), key=lambda item: max(item[1]["logits"], item[1]["iou"]) / item[1]["limit"])
        state = "all within the tests' limits" if row["all_within"] else "NOT all within the tests' limits"
        return f"{state}; closest to its limit: {worst[0]} logits {worst[1]['logits']:.1e}, IoU {worst[1]['iou']:.1e} (limit {worst[1]['limit']:.1e})"
    if kind == "segment":
        utilization = number(row["gpu_utilization_mean"], 0)
        return (f"{row['images']} images {row['image_size']} px in {row['wall_s']:.1f} s (start-up included), "
                f"GPU utilisation mean {utilization}% ({row['utilization_source']}); memory not measured (child process)")
    if kind == "glesam":
        return f"{row['time_vs_sam']:.2f}x SAM path's set_image time"
    parts = [row["how"]] if "how" in row else []
    if row.get("best_batch"):
        parts.append("best batch")
    if row["compiled"]:
        parts.append(f"compile + warm-up {row['warmup_s']:.1f} s (not timed)")
    return "; ".join(parts)


def row_line(row: dict[str, Any]) -> str:
    cells = [row["kind"], row["model"] or "-", row["path"] or "-", row["precision"] or "-", str(row["batch"] or "-"),
             row["compiled"] or "no", number(row.get("images_per_s")), number(row.get("prompts_per_s"), 1),
             number(row.get("peak_gb")), notes(row)]
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"GPU suite, {report['date']}: {report['device_name']}, torch {report['torch']} (CUDA {report['cuda']}); "
             f"`{report['command']}`; {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget.",
             "",
             "| kind | model | path | precision | batch | compiled | images/s | prompts/s | peak GB | notes |",
             "|---|---|---|---|---:|---|---:|---:|---:|---|"]
    lines += [row_line(row) for row in report["rows"]]
    lines += ["", *anchor_lines(report["anchor"]), ""]
    return "\n".join(lines)


def write(out: Path, report: dict[str, Any]) -> None:
    write_json(out / "gpu_suite.json", report)
    write_text(out / "gpu_suite.md", markdown(report))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for gpu_suite.json and gpu_suite.md.")
    parser.add_argument("--budget-s", type=float, default=480.0, help="No new row starts after this many seconds.")
    parser.add_argument("--device", default="cuda", help="cuda (the first CUDA device), cuda:N, or cpu.")
    parser.add_argument("--quick", action="store_true", help="The dry run: vit_micro, the built-in model, small sizes.")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"Comma-separated subset of {','.join(SECTIONS)} (default: all), e.g. to finish a spent run.")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("Error: --device cuda: no CUDA device here (the dry run is --device cpu --quick)", file=sys.stderr)
        return 2
    if device.type not in ("cuda", "cpu"):
        print(f"Error: --device {args.device}: the suite runs on cuda or cpu", file=sys.stderr)
        return 2
    sections = tuple(name.strip() for name in args.sections.split(",") if name.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        print(f"Error: --sections {args.sections}: choose from {','.join(SECTIONS)}", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    if args.quick:  # tiny ops on a shared CPU: one thread is many times faster (children inherit it)
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
    budget = Budget(args.budget_s)
    started = time.monotonic()
    torch.manual_seed(0)
    rows: list[dict] = []
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": "python3 benchmarks/gpu_suite.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
              "torch": torch.__version__, "cuda": torch.version.cuda, "quick": args.quick, "budget_s": args.budget_s,
              "plan": plan.__dict__, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
              "tf32_cudnn": torch.backends.cudnn.allow_tf32, "rows": rows}
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-suite-") as work:
            suite(plan, device, budget, Path(work), rows, sections)
    finally:  # an interrupted run still writes every row it has
        report.update(elapsed_s=time.monotonic() - started, anchor=anchors(rows, plan))
        write(args.out, report)
        print("\n" + "\n".join(anchor_lines(report["anchor"])))
        print(f"wrote {args.out / 'gpu_suite.json'} and {args.out / 'gpu_suite.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

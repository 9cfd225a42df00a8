"""Regenerates the shipped default model, core/assets/robustsam_default.pth, from scratch with fixed seeds.

Stage A: a vit_micro_p8 SAM (vit_micro at patch size 8) trained from scratch on clear scenes textured from the installed sample
photographs (`robustsam train --stage base --data photos:4000`, core.data.photo_scenes, train split).
Stage B: the RobustSAM modules on the frozen stage-A model, online degradations (`robustsam train`),
the robust output token and its MLP starting as copies of SAM's token 0 and hypernetwork (warm_start).
Then `robustsam export` merges them, the segment-everything settings are calibrated on scenes of the
training photographs at seeds training never draws (the held-out photographs stay untouched) and
stored in the checkpoint, and the IoU on held-out scenes is measured and printed.

    python3 scripts/build_default_model.py [--work build/default-model] [--output core/assets/robustsam_default.pth]
    python3 scripts/build_default_model.py --calibrate-only --output MODEL.pth   # recalibrate a model in place
    python3 scripts/build_default_model.py --device cuda --budget-min 8          # a GPU candidate, kept only if better

About 35 minutes on 2 CPU cores. One torch thread: on a shared machine it is far faster than two.

With --budget-min the two stages train with a batch of 64 for as many steps as fit the budget (their
speed measured by a 20-step probe of each; both stages get the same number of steps, as in the CPU
schedule, and 15% of the budget is left for export, calibration and measuring). The result is a
candidate in --work: it replaces --output (and docs/replication.md is regenerated) only if its mean
robust-path IoU over the held-out scenes beats the current model's and its file stays <= 40 MB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import RobustSam, build_robustsam  # noqa: E402
from core.io import atomic_path, write_json  # noqa: E402
from core.data.photo_scenes import make_photo_scene  # noqa: E402
from core.data.scenes import make_scene  # noqa: E402
from core.degradations import PUBLISHED, degrade  # noqa: E402
from core.inference import RobustAutomaticMaskGenerator  # noqa: E402
from core.model.checkpoint import infer_model_type, is_robust_key, read_state_dict  # noqa: E402
from core.model.config import get_config  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT, save_with_amg_defaults  # noqa: E402
from robustsam_cli.main import cli  # noqa: E402
from train.data import VALIDATION_FIRST_SEED, open_dataset, validation_batches  # noqa: E402
from train.validate import validation_iou  # noqa: E402

IMAGE_SIZE = 128
# Training scenes are textured from the installed sample photographs (core.data.photo_scenes, train
# split); validation during training uses scenes of the same photographs at seeds training never draws.
DATA = "photos:4000"
VALIDATION = ["--val-data", "photos:32", "--val-every", "500", "--val-count", "32"]
# 2000 steps per stage: the schedule that fits about 35 minutes on a shared 2-core machine
# (vit_micro_p8: stage A ~4.5 steps/s, stage B ~2 steps/s on one core beside other work).
STAGE_A = [
    "--stage", "base", "--model-type", "vit_micro_p8", "--data", DATA, "--image-size", str(IMAGE_SIZE),
    "--prompt", "mixed", "--batch-size", "16", "--optimizer", "adamw", "--lr", "2e-3", "--weight-decay", "1e-4",
    "--epochs", "8", "--lr-step", "6", "--seed", "0", *VALIDATION, "--save-every", "1000",
]
STAGE_B = [
    "--stage", "robust", "--data", DATA, "--image-size", str(IMAGE_SIZE), "--prompt", "mixed",
    "--batch-size", "16", "--lr", "1e-3", "--epochs", "8", "--lr-step", "6", "--seed", "1", *VALIDATION,
    "--save-every", "1000",
]

# --budget-min: the GPU schedule and the rule that decides whether its model replaces the shipped one.
BUDGET_BATCH = 64
BUDGET_RESERVE = 0.15  # of the budget, for export, calibration and measuring
PROBE_STEPS = 20
SCENES_PER_EPOCH = int(DATA.split(":")[1])
MAX_MODEL_BYTES = 40 * 2**20


def with_option(arguments: list[str], flag: str, value: object) -> list[str]:
    """`arguments` with `flag`'s value replaced, or the flag and value appended."""
    if flag in arguments:
        index = arguments.index(flag)
        return arguments[: index + 1] + [str(value)] + arguments[index + 2 :]
    return arguments + [flag, str(value)]


def budget_stage(stage: list[str], steps: int, device: str) -> list[str]:
    """A stage's arguments for `steps` steps of BUDGET_BATCH on `device`; the learning rate drops at
    3/4 of the epochs, as the CPU schedule's 6 of 8."""
    epochs = max(1, math.ceil(steps * BUDGET_BATCH / SCENES_PER_EPOCH))
    arguments = with_option(with_option(stage, "--batch-size", BUDGET_BATCH), "--epochs", epochs)
    arguments = with_option(with_option(arguments, "--lr-step", max(1, round(epochs * 3 / 4))), "--max-steps", steps)
    return with_option(with_option(arguments, "--device", device), "--val-every", max(steps // 4, 1))


def steps_in_budget(seconds: float, probe_a: float, probe_b: float) -> int:
    """Steps per stage that fill `seconds` of training, given PROBE_STEPS-step probes taking
    `probe_a` and `probe_b` seconds (start-up included, so the estimate errs short)."""
    per_step = (probe_a + probe_b) / PROBE_STEPS
    return max(PROBE_STEPS, int(seconds / per_step))


def held_out_score(results: dict[str, dict[str, float]]) -> float:
    """Mean robust-path IoU, degraded and clear, over every held-out scene kind and prompt of `measure`."""
    values = [scores[f"robust/{condition}"] for scores in results.values() for condition in ("degraded", "clear")]
    return sum(values) / len(values)


def replaces(current: dict[str, dict[str, float]], candidate: dict[str, dict[str, float]], candidate_bytes: int) -> tuple[bool, str]:
    """Whether the candidate replaces the current model, and why."""
    old, new = held_out_score(current), held_out_score(candidate)
    if candidate_bytes > MAX_MODEL_BYTES:
        return False, f"candidate is {candidate_bytes / 2**20:.1f} MB, over {MAX_MODEL_BYTES // 2**20} MB"
    if new <= old:
        return False, f"candidate's held-out robust IoU {new:.4f} is not above the current model's {old:.4f}"
    return True, f"candidate's held-out robust IoU {new:.4f} beats the current model's {old:.4f}"


def run(arguments: list[str]) -> None:
    print("robustsam " + " ".join(arguments), flush=True)
    cli.main(arguments, prog_name="robustsam", standalone_mode=False)


def warm_start(checkpoint: Path, output: Path, seed: int = 1) -> None:
    """Stage A's SAM with robust modules drawn from `seed`, except the robust output token and MLP,
    which start as SAM's output tokens and token 0's hypernetwork MLP (the one the segmentation loss
    trains). The published recipe draws them at random too; with 2000 steps on a tiny model, a robust
    path drawn at random ended below the frozen SAM path it is meant to beat (held-out photo scenes,
    box IoU 0.674 vs 0.699 degraded), so the miniature starts it where SAM's path is."""
    sam = {key: value for key, value in read_state_dict(checkpoint).items() if not is_robust_key(key)}
    torch.manual_seed(seed)
    model_type = infer_model_type(sam, checkpoint)
    model = RobustSam(get_config(model_type), model_type)
    model.load_state_dict(sam, strict=False)
    decoder = model.mask_decoder
    with torch.no_grad():
        decoder.custom_robust_token.weight.copy_(decoder.mask_tokens.weight)
        decoder.robust_mlp.load_state_dict(decoder.output_hypernetworks_mlps[0].state_dict())
    torch.save(model.state_dict(), output)


def measure(model: RobustSam, count: int) -> dict[str, dict[str, float]]:
    """IoU of the single-mask output on `count` held-out scenes per kind and prompt, robust vs SAM path;
    scene i is degraded by published type i mod 15 at level 3. Kinds: photo scenes of the held-out
    photographs, and the synthetic styles."""
    results = {}
    for name, spec in (("photos", f"photos:{count}:held_out"), ("geometric", f"synthetic:{count}:geometric"),
                       ("organic", f"synthetic:{count}:organic")):
        samples = open_dataset(spec, split="", image_dir=None, size=IMAGE_SIZE, first_seed=VALIDATION_FIRST_SEED)
        for prompt in ("box", "points"):
            batches = validation_batches(samples, count=count, batch_size=32, seed=123, size=IMAGE_SIZE, prompt=prompt,
                                         num_points=3, level=3, device=torch.device("cpu"))
            results[f"{name}/{prompt}"] = validation_iou(model, batches)
    return results


# Segment-everything calibration: scenes at seeds no training run draws (calibration_scenes).
CALIBRATION_FIRST_SEED = 3_000_000
CALIBRATION_SCENES = 32
POINTS_PER_SIDE = (16, 24)
PRED_IOU_THRESHOLDS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.88)
# The tiny model's stability scores sit far below a released SAM's: the grid reaches down to 0.3.
STABILITY_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MATCH_IOU = 0.5


def photo_scenes(split: str, first_seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (S, S, 3) uint8, masks (M, S, S) bool) for `count` photo scenes; odd ones degraded."""
    return degraded_pairs([make_photo_scene(first_seed + index, size=IMAGE_SIZE, split=split) for index in range(count)], first_seed)


def degraded_pairs(samples: Sequence, first_seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, masks) per sample; odd ones degraded by published type (i // 2) mod 15 at level 3, even ones clear."""
    pairs = []
    for index, sample in enumerate(samples):
        image = sample.image
        if index % 2:
            tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            kind = PUBLISHED[(index // 2) % len(PUBLISHED)]
            tensor = degrade(tensor, kind, level=3, generator=torch.Generator().manual_seed(first_seed + index))
            image = (tensor[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
        pairs.append((image, sample.masks))
    return pairs


def calibration_scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    """Scenes no training run draws and no report measures: training photographs and both synthetic
    styles (the bundled examples are synthetic scenes), half of them degraded."""
    samples = [make_photo_scene(CALIBRATION_FIRST_SEED + i, size=IMAGE_SIZE) for i in range(CALIBRATION_SCENES // 2)]
    for style in ("geometric", "organic"):
        samples += [make_scene(CALIBRATION_FIRST_SEED + i, size=IMAGE_SIZE, style=style) for i in range(CALIBRATION_SCENES // 4)]
    return degraded_pairs(samples, CALIBRATION_FIRST_SEED)


def match_counts(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(ground-truth masks matched, predicted masks matched) at IoU >= 0.5; (K, H, W) and (M, H, W) bool."""
    if len(predicted) == 0:
        return 0, 0
    p = predicted.reshape(len(predicted), -1).astype(np.float32)
    t = truth.reshape(len(truth), -1).astype(np.float32)
    inter = t @ p.T
    union = t.sum(1)[:, None] + p.sum(1)[None] - inter
    matched = inter / np.maximum(union, 1) >= MATCH_IOU
    return int(matched.any(1).sum()), int(matched.any(0).sum())


def everything_scores(records: Sequence[list[dict]], scenes: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Recall (ground-truth objects matched), precision (masks that match one) and masks per image."""
    found = objects = matched = masks = 0
    for image_records, (_, truth) in zip(records, scenes):
        predicted = np.array([r["segmentation"] for r in image_records], dtype=bool).reshape(-1, *truth.shape[1:])
        gt_hits, predicted_hits = match_counts(predicted, truth)
        found, objects, matched, masks = found + gt_hits, objects + len(truth), matched + predicted_hits, masks + len(predicted)
    return {"recall": found / max(objects, 1), "precision": matched / max(masks, 1), "masks_per_image": masks / max(len(scenes), 1)}


def generate_all(model: RobustSam, scenes: Sequence[tuple[np.ndarray, np.ndarray]], **settings: float) -> list[list[dict]]:
    generator = RobustAutomaticMaskGenerator(model, robust=True, **settings)
    return [generator.generate(image) for image, _ in scenes]


def calibrate_amg(model: RobustSam, scenes: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The generator settings of the grid with the best F1 of recall and precision on `scenes`.

    Each points-per-side runs once with no thresholds; the threshold pairs filter its masks (box NMS
    then sees a few more candidates than a real run would, which only makes the estimate cautious)."""
    best: tuple[float, dict[str, float], dict[str, float]] = (-1.0, {}, {})
    for points in POINTS_PER_SIDE:
        loose = generate_all(model, scenes, points_per_side=points, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        for iou_thresh, stability_thresh in itertools.product(PRED_IOU_THRESHOLDS, STABILITY_THRESHOLDS):
            kept = [[r for r in image if r["predicted_iou"] > iou_thresh and r["stability_score"] >= stability_thresh]
                    for image in loose]
            scores = everything_scores(kept, scenes)
            f1 = 2 * scores["recall"] * scores["precision"] / max(scores["recall"] + scores["precision"], 1e-9)
            if f1 > best[0]:
                best = (f1, {"points_per_side": points, "pred_iou_thresh": iou_thresh,
                             "stability_score_thresh": stability_thresh, "box_nms_thresh": 0.7}, scores)
    print("calibration scenes: " + ", ".join(f"{key} {value:.3f}" for key, value in best[2].items()), flush=True)
    return best[1]


def store_amg_defaults(model_path: Path) -> dict[str, float]:
    """Calibrates the model at `model_path` and rewrites the file as {"model": ..., "amg_defaults": ...}."""
    state = read_state_dict(model_path)
    model = build_robustsam(None, model_path)
    settings = calibrate_amg(model, calibration_scenes())
    with atomic_path(model_path) as tmp:
        save_with_amg_defaults(state, settings, tmp)
    print("segment-everything defaults: " + json.dumps(settings), flush=True)
    return settings


def timed_run(arguments: list[str]) -> float:
    start = time.perf_counter()
    run(arguments)
    return time.perf_counter() - start


def build_in_budget(args: argparse.Namespace) -> None:
    """Trains a candidate on args.device within args.budget_min minutes, then keeps or replaces args.output."""
    deadline = time.monotonic() + args.budget_min * 60
    work = args.work / f"budget-{args.device.replace(':', '-')}"
    probe = work / "probe"
    probe_a = timed_run(["train", *budget_stage(STAGE_A, PROBE_STEPS, args.device), "-o", str(probe / "stage-a")])
    warm_start(probe / "stage-a" / "final.pth", probe / "warm-start.pth")
    probe_b = timed_run(["train", *budget_stage(STAGE_B, PROBE_STEPS, args.device),
                         "--checkpoint", str(probe / "warm-start.pth"), "-o", str(probe / "stage-b")])
    training_s = (deadline - time.monotonic()) - args.budget_min * 60 * BUDGET_RESERVE
    steps = steps_in_budget(training_s, probe_a, probe_b)
    print(f"probes: stage A {probe_a:.1f} s, stage B {probe_b:.1f} s per {PROBE_STEPS} steps -> {steps} steps per stage", flush=True)
    base, robust, candidate = work / "stage-a", work / "stage-b", work / "candidate.pth"
    run(["train", *budget_stage(STAGE_A, steps, args.device), "-o", str(base)])
    warm_start(base / "final.pth", base / "warm-start.pth")
    run(["train", *budget_stage(STAGE_B, steps, args.device), "--checkpoint", str(base / "warm-start.pth"), "-o", str(robust)])
    run(["export", "--robust", str(robust / "final.pth"), "--sam", str(base / "final.pth"), "-o", str(candidate)])
    store_amg_defaults(candidate)
    current = measure(build_robustsam(None, args.output), args.eval_count)
    new = measure(build_robustsam(None, candidate), args.eval_count)
    replace, reason = replaces(current, new, candidate.stat().st_size)
    write_json(work / "selection.json", {"steps": steps, "current": current, "candidate": new, "replaced": replace,
                                         "reason": reason})
    print(("replacing " if replace else "keeping ") + f"{args.output}: {reason}", flush=True)
    if replace:
        with atomic_path(args.output) as tmp:
            shutil.copyfile(candidate, tmp)
        shipped = "default" if args.output.resolve() == DEFAULT_CHECKPOINT.resolve() else str(args.output)
        report = subprocess.run([sys.executable, str(ROOT / "scripts" / "replication.py"), "--checkpoint", shipped],
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        if report.returncode != 0:
            raise SystemExit(f"scripts/replication.py exited {report.returncode}: docs/replication.md not regenerated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "default-model")
    parser.add_argument("--output", type=Path, default=ROOT / "core" / "assets" / "robustsam_default.pth")
    parser.add_argument("--eval-count", type=int, default=300, help="Held-out scenes per style for the IoU table.")
    parser.add_argument("--calibrate-only", action="store_true", help="Only calibrate and store the segment-everything settings of --output.")
    parser.add_argument("--device", default="cpu", help="Training device (cpu, cuda, cuda:1, ...).")
    parser.add_argument("--budget-min", type=float, help="Train a candidate within this many minutes; it replaces --output only if better.")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    if args.calibrate_only:
        store_amg_defaults(args.output)
        return
    if args.budget_min is not None:
        build_in_budget(args)
        return
    stage_a, stage_b = (with_option(stage, "--device", args.device) for stage in (STAGE_A, STAGE_B))
    base, robust = args.work / "stage-a", args.work / "stage-b"
    if not (base / "final.pth").is_file():
        run(["train", *stage_a, "-o", str(base)])
    if not (robust / "final.pth").is_file():
        warm_start(base / "final.pth", base / "warm-start.pth")
        run(["train", *stage_b, "--checkpoint", str(base / "warm-start.pth"), "-o", str(robust)])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    run(["export", "--robust", str(robust / "final.pth"), "--sam", str(base / "final.pth"), "-o", str(args.output)])
    store_amg_defaults(args.output)
    results = measure(build_robustsam(None, args.output), args.eval_count)
    (args.work / "iou.json").write_text(json.dumps(results, indent=1))
    header = ("robust degraded", "SAM degraded", "robust clear", "SAM clear")
    print(f"{'scenes/prompt':24s} " + " ".join(f"{name:>16s}" for name in header))
    for key, scores in results.items():
        values = (scores["robust/degraded"], scores["sam/degraded"], scores["robust/clear"], scores["sam/clear"])
        print(f"{key:24s} " + " ".join(f"{value:16.3f}" for value in values))


if __name__ == "__main__":
    main()

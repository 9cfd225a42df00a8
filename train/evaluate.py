"""The evaluation protocol: every model on the same images and prompts, one table per dataset.

Each image is encoded once per model and all its objects are decoded from that embedding, one
prompt (3 positive points, or the box) per ground-truth object, single-mask output. Per-image
results go to an append-only cache per model so an interrupted run resumes where it stopped.
Tables have one row per degradation, then "Degrade" (mean over the degradation rows), "Clear"
and "Average" (mean over all condition rows), as in the paper's Tables 2-6.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

from core import RobustPredictor
from core.inference.loading import make_predictor, open_model
from core.model.checkpoint import RobustModulesUninitialized
from core.model.default_model import default_checkpoint
from core.data.datasets import CLEAR, DatasetSpec, Sample, SampleReader
from core.errors import InputError
from core.evaluation.metrics import (
    AP_KEYS,
    ApInstance,
    batch_boundary_iou,
    batch_dice,
    batch_iou,
    batch_pixel_accuracy,
    encode_rle,
    mask_ap,
)
from core.evaluation.prompt_sampling import PROMPT_TYPES, ObjectPrompt, PromptBook

MASK_METRICS = ("iou", "dice", "pixel_accuracy", "boundary_iou")
METRIC_LABELS = {
    "iou": "IoU",
    "dice": "Dice",
    "pixel_accuracy": "PA",
    "boundary_iou": "BIoU",
    "ap": "AP",
    "ap_s": "AP_S",
    "ap_m": "AP_M",
    "ap_l": "AP_L",
}
DEGRADE, AVERAGE = "Degrade", "Average"
ALL_DATASETS = "all"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# Boundary IoU needs int32 working arrays of the full image size; bound them per call.
_BOUNDARY_CHUNK = 8
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: display name, checkpoint, and the decoder path (robust or SAM's)."""

    name: str
    checkpoint: Path
    robust: bool = True

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """'NAME=CKPT' (robust path) or 'NAME=CKPT:sam' (SAM's path); CKPT 'default' is the built-in model."""
        name, sep, checkpoint = text.partition("=")
        if not sep or not name or not checkpoint:
            raise InputError(f"--model {text}: expected NAME=CHECKPOINT[:sam]")
        if not _MODEL_NAME.match(name):
            raise InputError(f"--model {text}: the name may only use letters, digits, '.', '_' and '-'")
        robust = not checkpoint.endswith(":sam")
        checkpoint = checkpoint if robust else checkpoint[: -len(":sam")]
        if checkpoint == DEFAULT_MODEL:
            builtin = default_checkpoint()
            if builtin is None:
                raise InputError(f"--model {text}: this installation has no built-in model")
            return cls(name, builtin, robust)
        return cls(name, Path(checkpoint), robust)


@dataclass
class ImageResult:
    """One model's results on one image: per-object metrics and predicted-IoU scores, in object order
    (objects with an empty mask are left out); for box prompts, the RLEs that COCO AP needs."""

    metrics: dict[str, list[float]]
    scores: list[float]
    ap_instances: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Row:
    """One table row: label, kind ('condition', 'degrade', 'clear', 'average'), image / object counts,
    and the value of each metric for each model (NaN where undefined)."""

    label: str
    kind: str
    images: int
    objects: int
    values: dict[str, dict[str, float]]


@dataclass
class Table:
    dataset: str
    rows: list[Row]


def _prompt_digest(prompt_type: str, prompts: list[Optional[ObjectPrompt]]) -> str:
    payload = json.dumps([prompt_type, [p.to_json() if p is not None else None for p in prompts]])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class ResultCache:
    """Append-only JSON-lines cache of one model's per-image results.

    The first line fingerprints the model (checkpoint file, path, precision); a cache with another
    fingerprint is discarded. Each later line holds one image; a line cut short by an interruption
    is ignored, so appending (rather than rewriting the whole file per image) is safe.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any], fresh: bool = False) -> None:
        self.path = path
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        header = json.dumps({"fingerprint": fingerprint}, sort_keys=True)
        lines = [] if fresh or not path.is_file() else path.read_text().splitlines()
        if lines and lines[0] == header:
            for line in lines[1:]:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.records[(record["dataset"], record["condition"], record["image"])] = record
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(header + "\n")

    def get(self, dataset: str, condition: str, image: str, digest: str) -> Optional[ImageResult]:
        record = self.records.get((dataset, condition, image))
        if record is None or record["prompts"] != digest:
            return None
        return ImageResult(record["metrics"], record["scores"], record["ap_instances"])

    def put(self, dataset: str, condition: str, image: str, digest: str, result: ImageResult) -> None:
        record = {
            "dataset": dataset,
            "condition": condition,
            "image": image,
            "prompts": digest,
            "metrics": result.metrics,
            "scores": result.scores,
            "ap_instances": result.ap_instances,
        }
        self.records[(dataset, condition, image)] = record
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def model_fingerprint(spec: ModelSpec, precision: str) -> dict[str, Any]:
    """What identifies a model's results: its checkpoint file (path, size, mtime), path and precision."""
    stat = spec.checkpoint.stat()
    return {
        "checkpoint": str(spec.checkpoint.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "robust": spec.robust,
        "precision": precision,
    }


def load_predictor(spec: ModelSpec, device: str, precision: str) -> tuple[RobustPredictor, Optional[str]]:
    """A predictor for `spec`, and a note when a checkpoint without robust modules is run on SAM's path
    (its robust modules would be untrained)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RobustModulesUninitialized)
        model = open_model(spec.checkpoint, device=device)  # RobustSAM/SAM or GleSAM: the file says
    untrained = any(issubclass(w.category, RobustModulesUninitialized) for w in caught)
    note = None
    if untrained and spec.robust:
        note = f"{spec.name}: {spec.checkpoint} has no RobustSAM modules; evaluating it on SAM's path"
    return make_predictor(model, robust=spec.robust and not untrained, precision=precision), note


def predict_objects(
    predictor: RobustPredictor, prompts: list[ObjectPrompt], prompt_type: str, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Single-mask predictions for the objects' prompts on the image set in `predictor`.

    Returns masks (N, H, W) bool and predicted IoU scores (N,) float.
    """
    masks, scores = [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        if prompt_type == "points":
            coords = predictor.transform.apply_coords(np.stack([p.points for p in chunk]).astype(np.float32), predictor.original_size)
            point_coords = torch.as_tensor(coords, dtype=torch.float32, device=predictor.device)
            point_labels = torch.ones(point_coords.shape[:2], dtype=torch.int64, device=predictor.device)
            boxes = None
        else:
            point_coords = point_labels = None
            transformed = predictor.transform.apply_boxes(np.stack([p.box for p in chunk]).astype(np.float32), predictor.original_size)
            boxes = torch.as_tensor(transformed, dtype=torch.float32, device=predictor.device)
        chunk_masks, chunk_scores, _ = predictor.predict_torch(point_coords, point_labels, boxes, multimask_output=False)
        masks.append(chunk_masks[:, 0].cpu().numpy())
        scores.append(chunk_scores[:, 0].cpu().numpy())
    return np.concatenate(masks), np.concatenate(scores)


def score_image(
    predictor: RobustPredictor,
    sample: Sample,
    prompts: list[Optional[ObjectPrompt]],
    prompt_type: str,
    batch_size: int,
    categories: Optional[list[int]] = None,
) -> ImageResult:
    """Encodes `sample.image` once, predicts every prompted object, and scores the masks against the GT."""
    kept = [i for i, prompt in enumerate(prompts) if prompt is not None]
    if not kept:
        return ImageResult({name: [] for name in MASK_METRICS}, [])
    predictor.set_image(sample.image)
    preds, scores = predict_objects(predictor, [prompts[i] for i in kept], prompt_type, batch_size)
    gts = sample.masks[kept]
    boundary = np.concatenate(
        [batch_boundary_iou(preds[s : s + _BOUNDARY_CHUNK], gts[s : s + _BOUNDARY_CHUNK]) for s in range(0, len(kept), _BOUNDARY_CHUNK)]
    )
    metrics = {
        "iou": batch_iou(preds, gts),
        "dice": batch_dice(preds, gts),
        "pixel_accuracy": batch_pixel_accuracy(preds, gts),
        "boundary_iou": boundary,
    }
    result = ImageResult({k: v.tolist() for k, v in metrics.items()}, scores.tolist())
    if prompt_type == "box":
        result.ap_instances = [
            {"gt": gt, "pred": pred, "category": categories[i] if categories is not None else 1}
            for i, gt, pred in zip(kept, encode_rle(gts), encode_rle(preds))
        ]
    return result


@dataclass
class EvalSettings:
    """Options of a run: prompt type ('points' or 'box'), images per dataset and condition (None: all),
    device, precision ('fp32', 'bf16', 'fp16'), prompts decoded per batch, and whether to ignore caches."""

    prompt_type: str = "points"
    limit: Optional[int] = None
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 32
    fresh: bool = False


# results[model][(dataset, condition)] -> {image name: ImageResult}
Results = dict[str, dict[tuple[str, str], dict[str, ImageResult]]]


def evaluate(
    models: list[ModelSpec],
    datasets: list[DatasetSpec],
    prompts: PromptBook,
    cache_dir: Path,
    settings: EvalSettings,
    on_image: Callable[[str], None] = lambda model: None,
    on_note: Callable[[str], None] = lambda note: None,
) -> Results:
    """Evaluates each model in turn on every condition of every dataset, with the prompts of `prompts`.

    `on_image(model name)` is called after each image (for progress), `on_note` with remarks.
    """
    if settings.prompt_type not in PROMPT_TYPES:
        raise InputError(f"--prompt: must be one of {', '.join(PROMPT_TYPES)}, not {settings.prompt_type!r}")
    device = str(settings.device)
    results: Results = {}
    for spec in models:
        if not spec.checkpoint.is_file():
            raise InputError(f"{spec.checkpoint}: no such checkpoint file")
    for spec in models:
        cache = ResultCache(cache_dir / f"{spec.name}.jsonl", model_fingerprint(spec, settings.precision), settings.fresh)
        predictor: Optional[RobustPredictor] = None
        per_model = results.setdefault(spec.name, {})
        for dataset in datasets:
            for condition in dataset.conditions():
                reader = dataset.reader(condition)
                categories = getattr(reader, "categories", None)
                images = per_model.setdefault((dataset.name, condition), {})
                for index in range(count_images(reader, settings.limit)):
                    sample = reader[index]
                    object_prompts = prompts.prompts_for(dataset.name, sample.name, sample.masks)
                    digest = _prompt_digest(settings.prompt_type, object_prompts)
                    result = cache.get(dataset.name, condition, sample.name, digest)
                    if result is None:
                        if predictor is None:
                            predictor, note = load_predictor(spec, device, settings.precision)
                            if note:
                                on_note(note)
                        result = score_image(
                            predictor,
                            sample,
                            object_prompts,
                            settings.prompt_type,
                            settings.batch_size,
                            categories(index) if categories is not None else None,
                        )
                        cache.put(dataset.name, condition, sample.name, digest, result)
                    images[sample.name] = result
                    on_image(spec.name)
    return results


def count_images(reader: SampleReader, limit: Optional[int]) -> int:
    """How many images of `reader` a run with `limit` evaluates."""
    return len(reader) if limit is None else min(limit, len(reader))


def _condition_values(images: Iterable[ImageResult], with_ap: bool) -> tuple[dict[str, float], int]:
    """Mean of each mask metric over all objects (and COCO AP over them); the object count."""
    images = list(images)
    values = {}
    for name in MASK_METRICS:
        per_object = [v for image in images for v in image.metrics[name]]
        values[name] = float(np.mean(per_object)) if per_object else math.nan
    objects = sum(len(image.scores) for image in images)
    if with_ap:
        instances = [
            ApInstance(f"{i}", inst["gt"], inst["pred"], score, inst["category"])
            for i, image in enumerate(images)
            for inst, score in zip(image.ap_instances, image.scores)
        ]
        values.update(mask_ap(instances))
    return values, objects


def _mean_rows(label: str, kind: str, rows: list[Row]) -> Row:
    """The row whose values are the means of `rows`' values (NaN ignored)."""
    models = rows[0].values.keys()
    values = {}
    for model in models:
        values[model] = {}
        for metric in rows[0].values[model]:
            finite = [row.values[model][metric] for row in rows if not math.isnan(row.values[model][metric])]
            values[model][metric] = float(np.mean(finite)) if finite else math.nan
    return Row(label, kind, sum(r.images for r in rows), sum(r.objects for r in rows), values)


def summary_rows(condition_rows: list[Row]) -> list[Row]:
    """Degradation rows, then Degrade, Clear and Average rows for the ones that exist."""
    degraded = [row for row in condition_rows if row.label != CLEAR]
    clear = [row for row in condition_rows if row.label == CLEAR]
    rows = list(degraded)
    if degraded:
        rows.append(_mean_rows(DEGRADE, "degrade", degraded))
    if clear:
        rows.append(Row("Clear", "clear", clear[0].images, clear[0].objects, clear[0].values))
    if degraded and clear:
        rows.append(_mean_rows(AVERAGE, "average", degraded + clear))
    return rows


def build_tables(results: Results, datasets: list[DatasetSpec], with_ap: bool) -> list[Table]:
    """One table per dataset and, for several datasets, an 'all' table whose condition rows are the
    means over the datasets that have that condition."""
    models = list(results)
    tables = []
    per_condition: dict[str, list[Row]] = {}
    for dataset in datasets:
        condition_rows = []
        for condition in dataset.conditions():
            values, images, objects = {}, 0, 0
            for model in models:
                scored = results[model][(dataset.name, condition)]
                values[model], objects = _condition_values(scored.values(), with_ap)
                images = len(scored)
            row = Row(condition, "condition", images, objects, values)
            condition_rows.append(row)
            per_condition.setdefault(condition, []).append(row)
        tables.append(Table(dataset.name, summary_rows(condition_rows)))
    if len(datasets) > 1:
        merged = [_mean_rows(condition, "condition", rows) for condition, rows in per_condition.items()]
        merged.sort(key=lambda row: (row.label != CLEAR, row.label))
        tables.append(Table(ALL_DATASETS, summary_rows(merged)))
    return tables


def table_metrics(with_ap: bool) -> tuple[str, ...]:
    """The metric columns of the tables."""
    return MASK_METRICS + (AP_KEYS if with_ap else ())

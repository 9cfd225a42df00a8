"""The evaluation protocol: every model on the same images and prompts, one table per dataset.

Each image is encoded once per model and all its objects are decoded from that embedding, one
prompt (3 positive points, or the box) per ground-truth object, single-mask output. Per-image
results go to an append-only cache per model so an interrupted run resumes where it stopped; a
run split over shards (`core.evaluation.shards`) evaluates each shard's part of the `EvalPlan` into that
part's cache, and `collect_results` merges the parts.
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

from ..data.datasets import CLEAR, AnnotatedReader, DatasetSpec, Sample, SampleReader
from ..errors import InputError, OnFailure, per_image
from ..inference.loading import make_predictor, open_model
from ..inference.predictor import RobustPredictor
from ..io import encode_rle
from ..model.checkpoint import RobustModulesUninitialized
from ..model.default_model import default_checkpoint
from .metrics import (
    AP_KEYS,
    ApInstance,
    batch_boundary_iou,
    batch_dice,
    batch_iou,
    batch_pixel_accuracy,
    mask_ap,
)
from .prompt_sampling import PROMPT_TYPES, ObjectPrompt, PromptBook

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
# A run's folder holds CACHE_DIR/<model>.jsonl, and CACHE_DIR/PARTS/<K>-of-<N>/<model>.jsonl when split.
CACHE_DIR = "cache"
PARTS = "parts"


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


def _cache_header(fingerprint: dict[str, Any]) -> str:
    return json.dumps({"fingerprint": fingerprint}, sort_keys=True)


def _first_line(path: Path) -> Optional[str]:
    if not path.is_file():
        return None
    with path.open() as handle:
        return handle.readline().rstrip("\n")


def _cached_result(record: Optional[dict[str, Any]], digest: str) -> Optional[ImageResult]:
    """The ImageResult of a cache record made with prompts of this digest, else None (also for a
    recorded failure, so that a later run tries the image again)."""
    if record is None or record["prompts"] != digest or "error" in record:
        return None
    return ImageResult(record["metrics"], record["scores"], record["ap_instances"])


def read_cached(folder: Path, model: str, fingerprint: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The records of every cache file of `model` under `folder` (the one-process file and each
    part's) with this fingerprint, by (dataset, condition, image); the newest file wins a tie."""
    header = _cache_header(fingerprint)
    paths = [path for path in [folder / f"{model}.jsonl", *folder.glob(f"{PARTS}/*/{model}.jsonl")] if path.is_file()]
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(paths, key=lambda path: (path.stat().st_mtime_ns, str(path))):
        lines = path.read_text().splitlines()
        if not lines or lines[0] != header:
            continue
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut short by an interruption, or being appended by another part now
            records[(record["dataset"], record["condition"], record["image"])] = record
    return records


class ResultCache:
    """Append-only JSON-lines cache of one model's per-image results.

    The first line fingerprints the model (checkpoint file, path, precision); a cache with another
    fingerprint is discarded. Each later line holds one image; a line cut short by an interruption
    is ignored, so appending (rather than rewriting the whole file per image) is safe. A run split
    into parts appends to `folder/parts/<part>/<model>.jsonl` only and reads every part's file.
    Nothing is written before the first record: a run refused before its first image leaves no file.
    An image that could not be read is recorded as a failure, which a later run tries again.
    """

    def __init__(self, folder: Path, model: str, fingerprint: dict[str, Any], fresh: bool = False, part: Optional[str] = None) -> None:
        self.path = folder / f"{model}.jsonl" if part is None else folder / PARTS / part / f"{model}.jsonl"
        self.records = {} if fresh else read_cached(folder, model, fingerprint)
        self._header = _cache_header(fingerprint)
        self._restart = fresh or _first_line(self.path) != self._header  # rewritten with the first record

    def get(self, dataset: str, condition: str, image: str, digest: str) -> Optional[ImageResult]:
        return _cached_result(self.records.get((dataset, condition, image)), digest)

    def put(self, dataset: str, condition: str, image: str, digest: str, result: ImageResult) -> None:
        self._append({"dataset": dataset, "condition": condition, "image": image, "prompts": digest,
                      "metrics": result.metrics, "scores": result.scores, "ap_instances": result.ap_instances})

    def put_failure(self, dataset: str, condition: str, image: str, digest: str, error: str) -> None:
        """Records that the image could not be read (`error`: its one-line message)."""
        self._append({"dataset": dataset, "condition": condition, "image": image, "prompts": digest, "error": error})

    def _append(self, record: dict[str, Any]) -> None:
        self.records[(record["dataset"], record["condition"], record["image"])] = record
        if self._restart:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(self._header + "\n")
            self._restart = False
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


def require_checkpoints(models: list[ModelSpec]) -> None:
    """InputError for the first model whose checkpoint file does not exist."""
    for spec in models:
        if not spec.checkpoint.is_file():
            raise InputError(f"{spec.checkpoint}: no such checkpoint file")


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


@dataclass(frozen=True)
class EvalItem:
    """One image of a run: its dataset and condition, index in that condition's reader, name, and
    work (pixels x prompted objects), by which a split into shards is balanced."""

    dataset: str
    condition: str
    index: int
    name: str
    weight: float


class EvalPlan:
    """Every image a run evaluates, in table order, its prompts drawn into `prompts` while planning
    (from the masks alone, before any split): however the items are split, each image gets the
    prompts and the place in the tables that one process gives it. An image whose masks cannot be
    read goes to `on_failure` and is left out (`failures` counts them); without it, InputError.
    """

    def __init__(self, datasets: list[DatasetSpec], prompts: PromptBook, limit: Optional[int] = None,
                 on_failure: OnFailure = None) -> None:
        self.datasets = list(datasets)
        self.prompts = prompts
        self.readers: dict[tuple[str, str], AnnotatedReader] = {
            (dataset.name, condition): dataset.reader(condition) for dataset in self.datasets for condition in dataset.conditions()
        }
        self.items: list[EvalItem] = []
        self.failures = 0
        for (dataset, condition), reader in self.readers.items():
            for index in range(count_images(reader, limit)):
                annotation = None
                with per_image(on_failure):
                    annotation = reader.annotation(index)
                if annotation is None:
                    self.failures += 1
                    continue
                name, masks = annotation
                objects = sum(prompt is not None for prompt in prompts.prompts_for(dataset, name, masks))
                self.items.append(EvalItem(dataset, condition, index, name, float(masks[0].size * max(1, objects)) if len(masks) else 1.0))

    def object_prompts(self, item: EvalItem) -> list[Optional[ObjectPrompt]]:
        return self.prompts.entries[item.dataset][item.name]


def score_items(
    models: list[ModelSpec],
    plan: EvalPlan,
    cache_dir: Path,
    settings: EvalSettings,
    on_image: Callable[[str], None] = lambda model: None,
    on_note: Callable[[str], None] = lambda note: None,
    on_failure: OnFailure = None,
    items: Optional[list[EvalItem]] = None,
    part: Optional[str] = None,
) -> Results:
    """Scores each model in turn on the plan's images (or on `items` of it, as part `part` of a split
    run, whose results go to that part's cache), with the plan's prompts; `evaluate` also writes the
    run's document.

    `on_image(model name)` is called after each image (for progress), `on_note` with remarks. An
    unreadable image or mask goes to `on_failure` and is left out of the results (without it,
    InputError is raised).
    """
    if settings.prompt_type not in PROMPT_TYPES:
        raise InputError(f"--prompt: must be one of {', '.join(PROMPT_TYPES)}, not {settings.prompt_type!r}")
    device = str(settings.device)
    results: Results = {}
    require_checkpoints(models)
    for spec in models:
        cache = ResultCache(cache_dir, spec.name, model_fingerprint(spec, settings.precision), settings.fresh, part)
        predictor: Optional[RobustPredictor] = None
        per_model = results.setdefault(spec.name, {})
        for item in plan.items if items is None else items:
            object_prompts = plan.object_prompts(item)
            digest = _prompt_digest(settings.prompt_type, object_prompts)
            result = cache.get(item.dataset, item.condition, item.name, digest)
            if result is None:
                if predictor is None:
                    predictor, note = load_predictor(spec, device, settings.precision)
                    if note:
                        on_note(note)
                reader = plan.readers[(item.dataset, item.condition)]
                categories = getattr(reader, "categories", None)
                failed: list[str] = []
                with per_image(None if on_failure is None else failed.append):
                    sample = reader[item.index]
                if failed:
                    on_failure(failed[0])
                    cache.put_failure(item.dataset, item.condition, item.name, digest, failed[0])
                    on_image(spec.name)
                    continue
                result = score_image(
                    predictor,
                    sample,
                    object_prompts,
                    settings.prompt_type,
                    settings.batch_size,
                    categories(item.index) if categories is not None else None,
                )
                cache.put(item.dataset, item.condition, item.name, digest, result)
            per_model.setdefault((item.dataset, item.condition), {})[item.name] = result
            on_image(spec.name)
    return results


def collect_results(models: list[ModelSpec], plan: EvalPlan, cache_dir: Path, settings: EvalSettings,
                    on_failure: OnFailure = None) -> Results:
    """The results of every image of the plan from the caches that the parts of a split run wrote,
    in plan order, as one process's `score_items` returns them. Images a part could not read go to
    `on_failure` and are left out, as `score_items` leaves them out.

    Raises InputError naming the first image that no part has evaluated (never a partial merge).
    """
    results: Results = {}
    for spec in models:
        records = read_cached(cache_dir, spec.name, model_fingerprint(spec, settings.precision))
        per_model = results.setdefault(spec.name, {})
        for item in plan.items:
            digest = _prompt_digest(settings.prompt_type, plan.object_prompts(item))
            record = records.get((item.dataset, item.condition, item.name))
            if record is not None and record["prompts"] == digest and "error" in record:
                if on_failure is None:
                    raise InputError(record["error"])
                on_failure(record["error"])
                continue
            result = _cached_result(record, digest)
            if result is None:
                raise InputError(f"{cache_dir}: no result of {spec.name} for {item.dataset}/{item.condition}/{item.name}; "
                                 "run the shards that have not finished")
            per_model.setdefault((item.dataset, item.condition), {})[item.name] = result
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

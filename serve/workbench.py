"""What the server does with its models: embed an image once per model path and view, decode prompts
on the cached embedding exactly as `robustsam segment` does, segment everything, and save prompts
and masks that `robustsam segment FOLDER --prompts prompts.json` reproduces byte for byte.

    bench = Workbench(ImageFolder("photos/"), {"robust": p_robust, "sam": p_sam}, out=Path("labels/"))
    record = bench.predict("robust", "a.jpg", CLEAR, Prompt(box=(10, 10, 60, 80)))
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from core.data.prompt_files import Prompt, prompt_entry, tool_prompts
from core.errors import CheckpointError, InputError
from core.inference import MaskRecord, RobustAutomaticMaskGenerator, RobustPredictor, make_predictor, open_model
from core.inference.mask_writers import MASK_FILE, METADATA_NAME, ImageJob, PngWriter
from core.io import read_json, require_output_dir, write_json
from core.inference.segment import AutomaticSegmenter, PromptSegmenter
from core.model.default_model import read_amg_defaults
from core.model.robustsam import RobustSam

from .cache import Embedding, EmbeddingCache
from .images import CLEAR, DEFAULT_MAX_PIXELS, ImageFolder, ImageNotFound, View

PROMPTS_NAME = "prompts.json"
MASKS_DIR = "masks"
# The page's names for the model paths, in the order it shows them.
PATHS = ("robust", "sam", "glesam")


class SaveRefused(RuntimeError):
    """The server was started without an output folder."""


@dataclass(frozen=True)
class SaveSummary:
    """Where a save went: the prompt file, the folder of masks in `segment`'s png layout, counts."""

    prompts_file: Path
    masks_dir: Path
    images: int
    masks: int


class Workbench:
    """One predictor per model path (`PATHS`; RobustSAM's and SAM's share one model), the images of
    `folder`, and embeddings cached up to `cache_bytes`. Each predictor runs one request at a time;
    requests on different paths run side by side.

    `generator_options`: SAM's automatic-mask-generator settings for segment-everything (those the
    checkpoint carries, as `segment` applies them). `out`: where saves go (None: saving is refused).
    """

    def __init__(
        self,
        folder: ImageFolder,
        predictors: Mapping[str, RobustPredictor],
        *,
        out: Optional[Path] = None,
        cache_bytes: int = 1 << 30,
        generator_options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        unknown = sorted(set(predictors) - set(PATHS))
        if unknown or not predictors:
            raise ValueError(f"predictors must be keyed by some of {', '.join(PATHS)}, not {sorted(predictors)}")
        self.folder = folder
        self.predictors = {name: predictors[name] for name in PATHS if name in predictors}
        self.out = out
        self.cache = EmbeddingCache(cache_bytes)
        self.generator_options = dict(generator_options or {})
        self._locks = {name: threading.Lock() for name in self.predictors}
        self._save_lock = threading.Lock()

    def _predictor(self, path: str) -> RobustPredictor:
        if path not in self.predictors:
            raise ImageNotFound(f"no model path '{path}' (this server runs {', '.join(self.predictors)})")
        return self.predictors[path]

    def _cache_key(self, path: str, key: str, view: View) -> tuple:
        stat = self.folder.path(key).stat()
        return path, key, view.key, stat.st_mtime_ns, stat.st_size

    def _embedding(self, path: str, key: str, view: View) -> tuple[Embedding, bool]:
        """The cached embedding of an image on one path (computed if absent; the caller holds the
        path's lock) and whether it was computed now."""
        cache_key = self._cache_key(path, key, view)
        embedding = self.cache.get(cache_key)
        if embedding is not None:
            return embedding, False
        predictor = self.predictors[path]
        predictor.set_image(self.folder.read(key, view))
        embedding = Embedding.of(predictor)
        self.cache.put(cache_key, embedding)
        return embedding, True

    def embed(self, path: str, key: str, view: View = CLEAR) -> tuple[bool, float]:
        """Makes sure an image's embedding is cached; (computed now, seconds it took)."""
        self._predictor(path)
        start = time.perf_counter()
        with self._locks[path]:
            _, computed = self._embedding(path, key, view)
        return computed, time.perf_counter() - start

    def predict(self, path: str, key: str, view: View, prompt: Prompt, multimask: bool = False) -> MaskRecord:
        """The mask of one prompt, as `segment` decodes it (with --multimask: the best of three)."""
        return self.decode(path, key, view, [prompt], multimask)[0]

    def decode(self, path: str, key: str, view: View, prompts: Sequence[Prompt], multimask: bool = False) -> list[MaskRecord]:
        """Masks of prompts in one image, decoded in `segment`'s batches on the cached embedding."""
        predictor = self._predictor(path)
        with self._locks[path]:
            embedding, _ = self._embedding(path, key, view)
            height, width = embedding.original_size
            for prompt in prompts:
                prompt.check_inside(width, height)
            embedding.restore(predictor)
            return PromptSegmenter(predictor, multimask=multimask).decode(prompts, (width, height))

    def everything(self, path: str, key: str, view: View = CLEAR) -> list[MaskRecord]:
        """Every mask SAM's automatic generator finds, as `segment` without prompts writes them."""
        predictor = self._predictor(path)
        image = self.folder.read(key, view)
        with self._locks[path]:
            generator = RobustAutomaticMaskGenerator(predictor.model, predictor=predictor, **self.generator_options)
            return AutomaticSegmenter(generator)(image)

    def saved_prompts(self) -> dict[str, Any]:
        """The prompt file of the last save (the tool's JSON), {} when there is none."""
        if self.out is None or not (self.out / PROMPTS_NAME).is_file():
            return {}
        return read_json(self.out / PROMPTS_NAME, "prompt file")

    def save(self, data: Any, path: str = "robust") -> SaveSummary:
        """Writes prompts `data` (the tool's JSON: image key -> prompts) to OUT/prompts.json and each
        image's masks on `path` to OUT/masks/<stem>/<k>.png + metadata.csv, the files `robustsam
        segment FOLDER --prompts OUT/prompts.json -o DIR` (with `--mode sam` or the GleSAM checkpoint
        for those paths) writes in DIR. Everything is validated before anything is written; one save
        at a time."""
        if self.out is None:
            raise SaveRefused("this server was started without -o OUTPUT: saving is off")
        prompt_set = tool_prompts(Path("request"), data)
        jobs = [ImageJob(self.folder.path(key), key, tuple(prompts), index + 1) for index, (key, prompts) in enumerate(prompt_set.prompts.items())]
        records = [self.decode(path, job.key, CLEAR, job.prompts) if job.prompts else [] for job in jobs]
        writer = PngWriter(self.out / MASKS_DIR)
        with self._save_lock:
            for job, image_records in zip(jobs, records):
                writer.write(job, None, image_records)  # the png layout needs only the records, not the pixels
            _drop_other_images(writer.output_dir, {job.stem for job in jobs})
            entries = {key: [prompt_entry(prompt) for prompt in prompts] for key, prompts in prompt_set.prompts.items()}
            write_json(self.out / PROMPTS_NAME, entries)
        return SaveSummary(self.out / PROMPTS_NAME, writer.output_dir, len(jobs), sum(map(len, records)))


def _drop_other_images(masks_dir: Path, stems: set[str]) -> None:
    """Removes the masks an earlier save wrote for images this save no longer holds, so that the
    folder is what replaying the new prompt file writes."""
    for metadata in list(masks_dir.rglob(METADATA_NAME)):  # listed before anything is removed
        folder = metadata.parent
        if folder.relative_to(masks_dir).as_posix() not in stems:
            for mask in folder.iterdir():
                if MASK_FILE.match(mask.name):
                    mask.unlink()
            metadata.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()


def open_workbench(
    folder: str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    sam_checkpoint: Optional[str | os.PathLike] = None,
    model_type: Optional[str] = None,
    glesam_checkpoint: Optional[str | os.PathLike] = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    out: Optional[str | os.PathLike] = None,
    cache_bytes: int = 1 << 30,
    recursive: bool = False,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
) -> Workbench:
    """A Workbench on `folder`: RobustSAM's and SAM's paths of `checkpoint` (one model in memory),
    and GleSAM's when `glesam_checkpoint` is given; images over `max_pixels` are refused.
    InputError/CheckpointError naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    out = Path(out) if out is not None else None
    if out is not None:
        require_output_dir(out)
    model = open_model(checkpoint, sam_checkpoint=sam_checkpoint, model_type=model_type, device=device)
    if not isinstance(model, RobustSam):
        raise CheckpointError(f"{checkpoint}: a GleSAM checkpoint; pass it with --glesam beside a RobustSAM or SAM --checkpoint")
    predictors = {"robust": make_predictor(model, robust=True, precision=precision),
                  "sam": make_predictor(model, robust=False, precision=precision)}
    if glesam_checkpoint is not None:
        glesam = open_model(glesam_checkpoint, device=device)
        if isinstance(glesam, RobustSam):
            raise CheckpointError(f"{glesam_checkpoint}: not a GleSAM checkpoint (a RobustSAM or SAM one goes to --checkpoint)")
        predictors["glesam"] = make_predictor(glesam, precision=precision)
    return Workbench(ImageFolder(folder, recursive, exclude=out, max_pixels=max_pixels), predictors, out=out, cache_bytes=cache_bytes,
                     generator_options=read_amg_defaults(checkpoint))

"""The HTTP API under /api: the page uses it and so may any tool (an annotation tool calling a SAM
backend). Requests and answers are JSON (pixels: PNG); errors are `{"error": "..."}` with a 4xx
status. The app serves its OpenAPI description at /openapi.json.

    GET  /api/info                      models, degradations, whether saving is on
    GET  /api/images                    the folder's images
    GET  /api/image?key=a.jpg[&type=fog&level=3&seed=0]     the image (degraded), PNG
    POST /api/embed       {"image", "model", "degradation"}  compute and cache the embedding
    POST /api/predict     {..., "box", "points", "labels", "multimask", "mask_format"}  one mask
    POST /api/everything  {"image", "model", "degradation", "mask_format"}  segment everything
    GET  /api/prompts                   the saved prompt file
    POST /api/save        {"prompts": {image: [prompt, ...]}, "model"}  prompts + masks under -o
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any, Literal, Optional

import imageio.v3 as iio
import numpy as np
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from core.io import MASK_PNG_LEVEL, encode_rle, read_image_size
from core.data.prompt_files import tool_prompts
from core.degradations import LEVELS
from core.inference import MaskRecord

from .images import VIEW_KINDS, View
from .workbench import PATHS, Workbench

ModelPath = Literal[PATHS]  # type: ignore[valid-type]
Kind = Literal[VIEW_KINDS]  # type: ignore[valid-type]
MaskFormat = Literal["rle", "png"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Degradation(Strict):
    """A degradation applied on the server before the model sees the image; the generator is the
    one `robustsam degrade --seed SEED` uses for the same file. LQ-1..LQ-3 carry their level."""

    type: Kind
    level: int = Field(3, ge=LEVELS.start, le=LEVELS.stop - 1)
    seed: int = Field(0, ge=0, lt=2**63)

    def view(self) -> View:
        return View(self.type, self.level, self.seed)


class ImageRequest(Strict):
    image: str = Field(description="The image's key, as GET /api/images lists it.")
    model: ModelPath = Field("robust", description="robust: RobustSAM's path; sam: SAM's path of the same weights; glesam: the GleSAM checkpoint.")
    degradation: Optional[Degradation] = Field(None, description="None: the image as it is.")

    def view(self) -> View:
        return self.degradation.view() if self.degradation is not None else View()


class PredictRequest(ImageRequest):
    """One prompt in image pixels, with the fields and rules of the `--prompts` JSON."""

    box: Optional[list[float]] = Field(None, description="[x0, y0, x1, y1]")
    points: Optional[list[list[float]]] = Field(None, description="[[x, y], ...]")
    labels: Optional[list[int]] = Field(None, description="1 foreground, 0 background, one per point")
    multimask: bool = Field(False, description="Predict three masks and keep the best (segment --multimask).")
    mask_format: MaskFormat = "rle"


class EverythingRequest(ImageRequest):
    mask_format: MaskFormat = "rle"


class SaveRequest(Strict):
    prompts: dict[str, list[dict[str, Any]]] = Field(description="The `--prompts` JSON: image key -> prompts.")
    model: ModelPath = Field("robust", description="Whose masks to write beside the prompts.")


class Mask(BaseModel):
    """A mask: COCO RLE (`rle`: size [H, W], compressed counts) or an 8-bit PNG 0/255 (`png`, base64),
    with SAM's record fields."""

    rle: Optional[dict[str, Any]] = None
    png: Optional[str] = None
    score: float = Field(description="Predicted IoU.")
    stability: float
    bbox: list[float] = Field(description="[x, y, w, h] of the mask.")
    area: int


class PredictAnswer(BaseModel):
    mask: Mask
    seconds: float


class EverythingAnswer(BaseModel):
    masks: list[Mask]
    seconds: float


class EmbedAnswer(BaseModel):
    computed: bool = Field(description="False when the embedding was already cached.")
    seconds: float


class ImageEntry(BaseModel):
    key: str
    width: int
    height: int


class ImagesAnswer(BaseModel):
    images: list[ImageEntry]


class InfoAnswer(BaseModel):
    models: list[str]
    checkpoint: str
    degradations: list[str]
    levels: list[int]
    save: bool
    cached_embeddings: int
    cache_bytes: int


class SaveAnswer(BaseModel):
    prompts_file: str
    masks_dir: str
    images: int
    masks: int
    replay: str = Field(description="The segment command that writes the same masks again.")


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W) or (H, W, 3) uint8 array as PNG bytes."""
    return iio.imwrite("<bytes>", image, extension=".png", compress_level=MASK_PNG_LEVEL)


def mask_answer(record: MaskRecord, mask_format: str) -> Mask:
    if mask_format == "png":
        encoded = {"png": base64.b64encode(png_bytes(record.mask.astype(np.uint8) * 255)).decode("ascii")}
    else:
        encoded = {"rle": encode_rle(record.mask[None])[0]}
    return Mask(**encoded, score=record.predicted_iou, stability=record.stability_score, bbox=list(record.bbox), area=record.area)


def make_router(bench: Workbench, checkpoint: str, replay: dict[str, str]) -> APIRouter:
    """The /api routes on `bench`; `replay[path]`: the segment command (without -o) that rewrites a save."""
    router = APIRouter(prefix="/api")

    @router.get("/info")
    def info() -> InfoAnswer:
        """The model paths this server runs, the degradations it offers, whether saving is on."""
        return InfoAnswer(models=list(bench.predictors), checkpoint=checkpoint, degradations=list(VIEW_KINDS),
                          levels=list(LEVELS), save=bench.out is not None,
                          cached_embeddings=len(bench.cache), cache_bytes=bench.cache.nbytes)

    @router.get("/images")
    def images() -> ImagesAnswer:
        """The folder's images, keyed as `robustsam segment FOLDER` names them."""
        entries = []
        for key in bench.folder.keys():
            height, width = read_image_size(bench.folder.path(key))
            entries.append(ImageEntry(key=key, width=width, height=height))
        return ImagesAnswer(images=entries)

    @router.get("/image", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def image(key: str, kind: Optional[Kind] = Query(None, alias="type"), level: int = Query(3, ge=LEVELS.start, le=LEVELS.stop - 1),
              seed: int = Query(0, ge=0, lt=2**63)) -> Response:
        """The image as PNG, degraded by `type` at `level` when given."""
        pixels = bench.folder.read(key, View(kind, level, seed))
        return Response(png_bytes(pixels), media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.post("/embed")
    def embed(request: ImageRequest) -> EmbedAnswer:
        """Computes and caches the image's embedding on one model path (the first click is then fast)."""
        computed, seconds = bench.embed(request.model, request.image, request.view())
        return EmbedAnswer(computed=computed, seconds=seconds)

    @router.post("/predict")
    def predict(request: PredictRequest) -> PredictAnswer:
        """The mask of one prompt (box and/or points), decoded as `robustsam segment` decodes it."""
        start = time.perf_counter()
        entry = {name: value for name in ("box", "points", "labels") if (value := getattr(request, name)) is not None}
        prompt = next(iter(tool_prompts(Path("request"), {request.image: [entry]}).prompts.values()))[0]
        record = bench.predict(request.model, request.image, request.view(), prompt, request.multimask)
        return PredictAnswer(mask=mask_answer(record, request.mask_format), seconds=time.perf_counter() - start)

    @router.post("/everything")
    def everything(request: EverythingRequest) -> EverythingAnswer:
        """Every mask SAM's automatic generator finds (the checkpoint's settings, as `segment`)."""
        start = time.perf_counter()
        records = bench.everything(request.model, request.image, request.view())
        return EverythingAnswer(masks=[mask_answer(r, request.mask_format) for r in records], seconds=time.perf_counter() - start)

    @router.get("/prompts")
    def prompts() -> dict[str, list[dict[str, Any]]]:
        """The prompts of the last save ({} before the first)."""
        return bench.saved_prompts()

    @router.post("/save")
    def save(request: SaveRequest) -> SaveAnswer:
        """Writes the prompts to OUT/prompts.json and their masks to OUT/masks/<stem>/<k>.png + metadata.csv."""
        summary = bench.save(request.prompts, request.model)
        return SaveAnswer(prompts_file=str(summary.prompts_file), masks_dir=str(summary.masks_dir), images=summary.images,
                          masks=summary.masks, replay=f"{replay[request.model]} --prompts {summary.prompts_file} -o DIR")

    return router

"""The options several commands share, written once so they cannot drift: the model (--checkpoint,
--sam-checkpoint, --model-type, --mode), where and how it runs (--device, --precision), the
automatic-mask generator's flags, the images encoded per forward pass (--image-batch), and the
progress bar of a run over images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

import click
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from core.errors import InputError
from core.inference.batching import AUTO_MAX_IMAGES, ImageBatch, default_image_batch, parse_image_batch
from core.inference.predictor import PRECISIONS
from core.model import MODEL_TYPES
from core.model.default_model import DEFAULT_MODEL_TYPE

Command = TypeVar("Command", bound=Callable[..., Any])
Decorator = Callable[[Command], Command]

MODES = ("robust", "sam")
CHECKPOINT_HELP = "RobustSAM (or SAM) checkpoint; `default` or none: the built-in model."
# segment-anything's scripts/amg.py flags, as SamAutomaticMaskGenerator keyword arguments, with its defaults.
_UNIT = click.FloatRange(0.0, 1.0)
GENERATOR_OPTIONS: dict[str, tuple[click.ParamType, int | float, str]] = {
    "points_per_side": (click.IntRange(min=1), 32, "Points sampled along each side of the image."),
    "points_per_batch": (click.IntRange(min=1), 64, "Points decoded at once."),
    "pred_iou_thresh": (_UNIT, 0.88, "Keep masks whose predicted IoU exceeds this."),
    "stability_score_thresh": (_UNIT, 0.95, "Keep masks whose stability score reaches this."),
    "stability_score_offset": (click.FloatRange(), 1.0, "Logit offset for the stability score."),
    "box_nms_thresh": (_UNIT, 0.7, "Box IoU above which duplicate masks are removed."),
    "crop_n_layers": (click.IntRange(min=0), 0, "Layers of image crops to also segment."),
    "crop_nms_thresh": (_UNIT, 0.7, "Box IoU above which duplicates between crops are removed."),
    "crop_overlap_ratio": (_UNIT, 512 / 1500, "Overlap between crops, as a fraction of the crop size."),
    "crop_n_points_downscale_factor": (click.IntRange(min=1), 1, "Points per side divided by this factor per crop layer."),
    "min_mask_region_area": (click.IntRange(min=0), 0, "Fill holes and drop islands smaller than this many pixels."),
}


def stack(*options: Decorator) -> Decorator:
    """One decorator applying `options` so that --help lists them in the order given."""

    def apply(command: Command) -> Command:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def checkpoint_option(help_text: str = CHECKPOINT_HELP, path_type: type = Path) -> Decorator:
    return click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=path_type), help=help_text)


def sam_checkpoint_option(help_text: str = "SAM checkpoint under a robust-modules-only --checkpoint.",
                          path_type: type = Path) -> Decorator:
    return click.option("--sam-checkpoint", type=click.Path(dir_okay=False, path_type=path_type), help=help_text)


def model_type_option(help_text: str = "Inferred from the checkpoint when omitted.") -> Decorator:
    """--model-type: one of the registered configurations (SAM sizes, then SAM 2's); the help names the built-in model's."""
    return click.option("--model-type", type=click.Choice(MODEL_TYPES),
                        help=f"{help_text} The built-in model is {DEFAULT_MODEL_TYPE}.")


def mode_option(prefix: str = "") -> Decorator:
    return click.option("--mode", type=click.Choice(MODES), default="robust", show_default=True,
                        help=f"{prefix}robust: RobustSAM's path; sam: SAM's own path with the same weights.")


def model_options(checkpoint_help: str = CHECKPOINT_HELP) -> Decorator:
    """--checkpoint, --sam-checkpoint, --model-type and --mode: which model runs, on which path."""
    return stack(checkpoint_option(checkpoint_help), sam_checkpoint_option(), model_type_option(), mode_option())


def device_option() -> Decorator:
    return click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps, ...")


def precision_option(help_text: str = "Autocast precision (bf16 and fp16 on CUDA).") -> Decorator:
    return click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True, help=help_text)


class ImageBatchType(click.ParamType):
    """A positive number of images, or `auto`."""

    name = "N|auto"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> ImageBatch:
        try:
            return parse_image_batch(value)
        except InputError as error:
            self.fail(str(error).split(": ", 1)[1], param, ctx)


def image_batch_option() -> Decorator:
    """--image-batch (None when not given: `resolve_image_batch` picks the device's default)."""
    return click.option(
        "--image-batch", type=ImageBatchType(), default=None,
        help="Images encoded in one forward pass (read ahead on background threads, decoded one by one; "
             f"outputs are the same for every N). auto: as many as fit in free GPU memory (at most {AUTO_MAX_IMAGES}), "
             "halved on out-of-memory. Default: 1 on a CPU, auto on CUDA.",
    )


def resolve_image_batch(image_batch: Optional[ImageBatch], device: torch.device) -> ImageBatch:
    """The user's --image-batch, or the default for `device`."""
    return default_image_batch(device) if image_batch is None else image_batch


def generator_options(names: Sequence[str] = tuple(GENERATOR_OPTIONS), defaults: Optional[Mapping[str, Any]] = None,
                      prefix: str = "[segment everything] ") -> Decorator:
    """The automatic-mask generator flags `names` (segment-anything's amg.py flags), with `defaults`
    replacing amg.py's defaults where given."""
    options = []
    for name in names:
        kind, default, help_text = GENERATOR_OPTIONS[name]
        options.append(click.option("--" + name.replace("_", "-"), name, type=kind, show_default=True, help=prefix + help_text,
                                    default=(defaults or {}).get(name, default)))
    return stack(*options)


class ImagesPerSecondColumn(ProgressColumn):
    """Images (or another `unit`: frames) per second over the recent samples (of all workers, for a
    launched job)."""

    def __init__(self, unit: str = "images") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        rate = f"{task.speed:.2f}" if task.speed else "-"
        return Text(f"{rate} {self.unit}/s", style="progress.data.speed")


def image_progress(console: Console, transient: bool = True, unit: str = "images") -> Progress:
    """The progress bar of a run over images (or frames): description, bar, done/total, rate,
    elapsed, remaining."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), ImagesPerSecondColumn(unit),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=transient)

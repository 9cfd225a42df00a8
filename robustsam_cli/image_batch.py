"""--image-batch: how many images `segment`, `eval` and `prior` encode in one forward pass."""

from __future__ import annotations

from typing import Any, Callable, Optional

import click
import torch

from core.errors import InputError
from core.inference.batching import AUTO_MAX_IMAGES, ImageBatch, default_image_batch, parse_image_batch


class ImageBatchType(click.ParamType):
    """A positive number of images, or `auto`."""

    name = "N|auto"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> ImageBatch:
        try:
            return parse_image_batch(value, f"--{param.name.replace('_', '-')}" if param else "--image-batch")
        except InputError as error:
            self.fail(str(error).split(": ", 1)[1], param, ctx)


def image_batch_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--image-batch", type=ImageBatchType(), default=None,
        help="Images encoded in one forward pass (read ahead on background threads, decoded one by one; "
             f"outputs are the same for every N). auto: as many as fit in free GPU memory (at most {AUTO_MAX_IMAGES}), "
             "halved on out-of-memory. Default: 1 on a CPU, auto on CUDA.",
    )(function)


def resolve_image_batch(image_batch: Optional[ImageBatch], device: torch.device) -> ImageBatch:
    """The user's --image-batch, or the default for `device`."""
    return default_image_batch(device) if image_batch is None else image_batch

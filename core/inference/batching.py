"""Images read ahead on background threads and encoded N at a time: the loop under `segment`, `eval`
and `prior`.

    batches = ImageBatches(predictor, image_batch=4)
    for job, image in batches(jobs, read):      # image: a Future of the (H, W, 3) image
        predictor.set_image(image.result())     # takes the batch's embedding: no second encoding
        ...

Each group of N images goes through the ViT in one forward pass (`set_image_batch`); the code that
follows decodes them one at a time as before, so every output is the one of a run without batches.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar, Union

import numpy as np
import torch

from ..errors import InputError

Item = TypeVar("Item")
ImageBatch = Union[int, str]  # a positive number of images, or AUTO
AUTO = "auto"
# `auto` never batches more images than this: beyond it a GPU gains little and an error costs more.
AUTO_MAX_IMAGES = 16
# Fraction of the free GPU memory `auto` plans to fill; the rest absorbs what one image's measure misses.
AUTO_MEMORY_SHARE = 0.8
READ_THREADS = 2


def parse_image_batch(value: ImageBatch, what: str = "--image-batch") -> ImageBatch:
    """A positive int or 'auto' from the user's text or number; InputError naming `what` otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: must be a positive number of images or 'auto', not {value!r}") from None
    if number < 1 or str(number) != str(value).strip():
        raise InputError(f"{what}: must be a positive number of images or 'auto', not {value!r}")
    return number


def default_image_batch(device: torch.device) -> ImageBatch:
    """1 on a CPU (batches gain nothing there: docs/performance.md), `auto` on CUDA."""
    return AUTO if device.type == "cuda" else 1


class ImageBatches:
    """Reads items' images ahead on `READ_THREADS` threads and has `predictor` encode them `image_batch`
    at a time (`auto`: as many as fit in free GPU memory, 1 off CUDA). A batch that runs out of GPU
    memory is split in halves and the run goes on with the smaller size.

    A predictor without `set_image_batch` (ONNX) encodes each image in its own `set_image`.
    """

    def __init__(self, predictor: object, image_batch: ImageBatch = 1) -> None:
        self.predictor = predictor
        self.device: torch.device = getattr(predictor, "device", torch.device("cpu"))
        self.auto = parse_image_batch(image_batch) == AUTO
        self.size: Optional[int] = None if self.auto and self.device.type == "cuda" else (1 if self.auto else int(image_batch))

    def __call__(self, items: Iterable[Item], read: Callable[[Item], Any],
                 image_of: Callable[[Any], np.ndarray] = lambda image: image) -> Iterator[tuple[Item, Future]]:
        """Yields each item with a Future of what `read` returns for it (its image, or a record whose
        `image_of` is the image), in order, after its batch is encoded. A read that fails (InputError)
        leaves its image out of the batch; the Future raises it."""
        queue: deque[tuple[Item, Future]] = deque()
        remaining = iter(items)
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="image-reader") as pool:

            def read_ahead(count: int) -> None:
                for item in itertools.islice(remaining, max(0, count - len(queue))):
                    queue.append((item, pool.submit(read, item)))

            read_ahead(1)
            while queue:
                size = self.size or 1
                # The next group is read while this one is encoded and decoded.
                read_ahead(2 * size)
                group = [queue.popleft() for _ in range(min(size, len(queue)))]
                while group:
                    chunk = group[: self.size or 1]
                    if not self._encode([image_of(future.result()) for _, future in chunk if future.exception() is None]):
                        continue
                    yield from chunk
                    group = group[len(chunk) :]

    def _encode(self, images: list[np.ndarray]) -> bool:
        """Encodes `images`; False when the GPU ran out of memory and the batch size was halved (the
        caller retries with smaller chunks)."""
        encode = getattr(self.predictor, "set_image_batch", None)
        if encode is None or not images:
            return True
        measure = self.size is None
        if measure:
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        try:
            encode(images)
        except torch.cuda.OutOfMemoryError:
            if len(images) == 1:
                raise
            self.size = max(1, len(images) // 2)
            torch.cuda.empty_cache()
            return False
        if measure:
            self.size = self._fitting_size(torch.cuda.max_memory_allocated(self.device) - base)
        return True

    def _fitting_size(self, image_bytes: int) -> int:
        """The number of images whose encoding (`image_bytes` each, measured) fits in free GPU memory."""
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return max(1, min(AUTO_MAX_IMAGES, int(AUTO_MEMORY_SHARE * free // max(image_bytes, 1))))

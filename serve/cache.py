"""Image embeddings kept between requests: a predictor's state after `set_image`, in an LRU cache
bounded by the bytes of its tensors, so a click after the first costs only the decoder."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Optional

import torch

from core.inference import RobustPredictor


@dataclass(frozen=True)
class Embedding:
    """What `RobustPredictor.set_image` leaves behind: embedding (1, D, h, w), early features, the
    robust path's image feature (None on SAM's path) and the sizes that map prompts into its frame."""

    features: torch.Tensor
    early_features: Optional[torch.Tensor]
    robust_features: Optional[torch.Tensor]
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @classmethod
    def of(cls, predictor: RobustPredictor) -> "Embedding":
        """The state of a predictor whose image is set."""
        return cls(predictor.features, predictor.early_features, predictor.robust_features,
                   tuple(predictor.original_size), tuple(predictor.input_size))

    def restore(self, predictor: RobustPredictor) -> None:
        """Sets this image in `predictor` as `set_image` would, without encoding it again."""
        predictor.reset_image()
        predictor.features, predictor.early_features, predictor.robust_features = self.features, self.early_features, self.robust_features
        predictor.original_size, predictor.input_size = self.original_size, self.input_size
        predictor.is_image_set = True

    @property
    def nbytes(self) -> int:
        tensors = (self.features, self.early_features, self.robust_features)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class EmbeddingCache:
    """Embeddings by key, least recently used dropped first once they hold more than `max_bytes`
    (the newest always stays). Safe to use from several threads."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Embedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[Embedding]:
        """The embedding of `key`, now the most recently used; None when absent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: Hashable, embedding: Embedding) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes += embedding.nbytes - (old.nbytes if old is not None else 0)
            self._entries[key] = embedding
            while len(self._entries) > 1 and self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1].nbytes

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

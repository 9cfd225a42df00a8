"""`RobustPredictor`: `segment_anything.SamPredictor` on RobustSAM, robust path by default."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from segment_anything import SamPredictor

from ..device import PRECISIONS, check_precision, precision_autocast
from ..model.robustsam import RobustSam

# Prompts decoded together on a CPU. The decoder's per-prompt activations, (4096, 256) per
# transformer step and (32, 256, 256) mask features, fall out of the cache in larger batches:
# on the 2-core reference machine 2 at a time cost 124 ms per robust prompt, 10 at a time 147.
CPU_PROMPT_CHUNK = 2


@dataclass
class EncodedImage:
    """What `set_image` computes for one image: the embedding (1, D, h, w), the early feature (1, C, h, w),
    the robust feature (None off the robust path), the original (H, W) and the resized input (h', w')."""

    features: torch.Tensor
    early_features: torch.Tensor
    robust_features: Optional[torch.Tensor]
    original_size: tuple[int, ...]
    input_size: tuple[int, ...]


def _own_copy(batch: torch.Tensor, index: int) -> torch.Tensor:
    """Image `index` of a (B, C, h, w) batch as a float32 (1, C, h, w) contiguous tensor of its own:
    convolutions round differently (~1e-6) on a view into a batch or on another memory layout."""
    return batch[index : index + 1].float().clone(memory_format=torch.contiguous_format)


class RobustPredictor(SamPredictor):
    """Computes the image embedding, early feature and image robust feature once per image,
    then decodes any number of prompts, batched, on the robust path or SAM's own path.

    Arguments:
      model: a RobustSam.
      robust: True for RobustSAM's path, False for SAM's (identical to SamPredictor).
      precision: 'fp32', or 'bf16' / 'fp16' autocast; the Fourier step stays in float32.
      exact_sam: on SAM's path, encode with segment_anything's own encoder forward so that every
        output equals SamPredictor's bit for bit (the fused-attention forward differs by ~1e-6).

    `set_image_batch` / `predict_batch` are SAM 2's batch API: many images of any sizes encoded in one
    forward pass of the ViT, then decoded per image.
    """

    model: RobustSam
    method = "robustsam"  # which robust-SAM method runs; GleSamPredictor says "glesam"

    def __init__(self, model: RobustSam, robust: bool = True, precision: str = "fp32", exact_sam: bool = True) -> None:
        check_precision(precision)
        self.robust = robust
        self.precision = precision
        self.exact_sam = exact_sam
        # The images of the last set_image_batch, in RGB or BGR as given, and their encodings.
        self._batch: list[EncodedImage] = []
        self._batch_images: list[tuple[np.ndarray, str]] = []
        super().__init__(model)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return precision_autocast(self.device, self.precision)

    @torch.inference_mode()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encodes a 1x3xHxW image already resized with `self.transform` (long side = model input)."""
        self._check_transformed(transformed_image)
        self.reset_image()
        self._use(self._encode([transformed_image], [original_image_size])[0])

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """SamPredictor.set_image; an image of the last `set_image_batch` takes its embedding from there."""
        for index, (batch_image, batch_format) in enumerate(self._batch_images):
            if batch_format == image_format and batch_image.shape == image.shape and np.array_equal(batch_image, image):
                self.reset_image()
                self._use(self._batch[index])
                return
        super().set_image(image, image_format)

    @torch.inference_mode()
    def set_image_batch(self, image_list: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """Encodes (H_i, W_i, 3) uint8 images of any sizes in one forward pass of the ViT (each resized
        and padded to the square input, as `set_image` does) for `predict_batch`.

        Afterwards `set_image` of one of these images takes its embedding instead of encoding it again,
        so code written one image at a time (the automatic mask generator, `segment`) runs on the batch.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
        self.reset_image()
        self._batch, self._batch_images = [], []
        if not image_list:
            return
        inputs = []
        for image in image_list:
            pixels = image if image_format == self.model.image_format else image[..., ::-1]
            resized = torch.as_tensor(self.transform.apply_image(pixels), device=self.device)
            inputs.append(resized.permute(2, 0, 1).contiguous()[None])
        self._batch = self._encode(inputs, [image.shape[:2] for image in image_list])
        self._batch_images = [(image, image_format) for image in image_list]

    def predict_batch(
        self,
        point_coords_batch: Optional[Sequence[Optional[np.ndarray]]] = None,
        point_labels_batch: Optional[Sequence[Optional[np.ndarray]]] = None,
        box_batch: Optional[Sequence[Optional[np.ndarray]]] = None,
        mask_input_batch: Optional[Sequence[Optional[np.ndarray]]] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """SAM2ImagePredictor.predict_batch: the prompts of image i of `set_image_batch` are entry i of
        each list. Points (N, 2) + labels (N,), a box (4,) and mask input (1, 256, 256) make one prompt,
        as in `predict`; points (B, N, 2), boxes (B, 4) and masks (B, 1, 256, 256) make B prompts.
        Coordinates are pixels of the original image, or fractions of its width and height when
        `normalize_coords` is False (SAM 2's convention).

        Returns per image masks (C, H, W) (bool, or logits), IoU (C,), low-res logits (C, 256, 256), each
        with a leading B for B prompts; equal to `set_image` of that image alone followed by `predict`.
        """
        if not self._batch:
            raise RuntimeError("Images must be set with .set_image_batch(...) before predict_batch.")
        results: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        for index, encoded in enumerate(self._batch):
            self._use(encoded)
            prompts = [None if batch is None else batch[index] for batch in (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)]
            outputs = self._predict_prompts(*prompts, multimask_output, return_logits, normalize_coords)
            for result, output in zip(results, outputs):
                result.append(output)
        return results

    def _predict_prompts(self, point_coords, point_labels, box, mask_input, multimask_output, return_logits, normalize_coords):
        """The prompts of the current image (see `predict_batch`) through `predict_torch`, as numpy arrays."""
        scale = np.ones(2) if normalize_coords else np.array(self.original_size[::-1], dtype=np.float64)
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            points = self.transform.apply_coords(np.asarray(point_coords, dtype=np.float64) * scale, self.original_size)
            coords = torch.as_tensor(points, dtype=torch.float, device=self.device)
            labels = torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=self.device)
            if coords.ndim == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            corners = self.transform.apply_boxes(np.asarray(box, dtype=np.float64) * np.tile(scale, 2), self.original_size)
            boxes = torch.as_tensor(corners, dtype=torch.float, device=self.device)
        if mask_input is not None:
            masks = torch.as_tensor(np.asarray(mask_input), dtype=torch.float, device=self.device)
            if masks.ndim == 3:
                masks = masks[None]
        outputs = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        return tuple(output.squeeze(0).cpu().numpy() for output in outputs)

    def _check_transformed(self, transformed_image: torch.Tensor) -> None:
        size = self.model.image_encoder.img_size
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3) or max(transformed_image.shape[2:]) != size:
            raise ValueError(f"set_torch_image input must be 1x3xHxW with long side {size}, got {tuple(transformed_image.shape)}")

    def _encode(self, transformed: Sequence[torch.Tensor], original_sizes: Sequence[tuple[int, ...]]) -> list[EncodedImage]:
        """Resized images (1, 3, h', w') -> their EncodedImages, the ViT run once on all of them."""
        images = torch.cat([self.model.preprocess(image) for image in transformed])
        with self._autocast():
            exact = True if not self.robust and self.exact_sam else None
            features, early = self.model.encode(images, exact=exact)
        return [
            self._encoded_image(_own_copy(features, i), _own_copy(early, i), tuple(original_sizes[i]), tuple(transformed[i].shape[-2:]))
            for i in range(len(transformed))
        ]

    def _encoded_image(self, features: torch.Tensor, early: torch.Tensor, original_size: tuple[int, ...], input_size: tuple[int, ...]) -> EncodedImage:
        """One image's encoder outputs completed with what its decoding needs (the robust feature)."""
        robust = self._image_feature(features, early) if self.robust else None
        return EncodedImage(features, early, robust, original_size, input_size)

    def _use(self, encoded: EncodedImage) -> None:
        """Makes `encoded` the current image."""
        self.features, self.early_features, self.robust_features = encoded.features, encoded.early_features, encoded.robust_features
        self.original_size, self.input_size = encoded.original_size, encoded.input_size
        self.is_image_set = True

    def _image_feature(self, features: torch.Tensor, early: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model.mask_decoder.image_feature(features, early).float()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch for N prompts at once: points (N, P, 2) + labels (N, P),
        boxes (N, 4), mask_input (N, 1, 256, 256), in the transformed frame.

        Returns masks (N, C, H, W), iou (N, C), low-res logits (N, C, 256, 256); C = 3 or 1.
        Prompts never mix: row i equals a call with prompt i alone. On a CPU they are decoded
        `CPU_PROMPT_CHUNK` at a time.
        """
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        prompts = (point_coords, point_labels, boxes, mask_input)
        rows = max((len(prompt) for prompt in prompts if prompt is not None), default=1)
        if self.device.type == "cpu" and rows > CPU_PROMPT_CHUNK:
            chunks = [
                self.predict_torch(
                    *(None if prompt is None else prompt[start : start + CPU_PROMPT_CHUNK] for prompt in prompts),
                    multimask_output=multimask_output,
                    return_logits=return_logits,
                )
                for start in range(0, rows, CPU_PROMPT_CHUNK)
            ]
            return tuple(torch.cat(parts) for parts in zip(*chunks))  # type: ignore[return-value]
        if self.robust and self.robust_features is None:
            self.robust_features = self._image_feature(self.features, self.early_features)
        points = (point_coords, point_labels) if point_coords is not None else None
        with self._autocast():
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
            low_res, iou = self.model.mask_decoder(
                image_embeddings=self.features,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                image_feature=self.robust_features if self.robust else None,
                robust=self.robust,
            )
        low_res, iou = low_res.float(), iou.float()
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def reset_image(self) -> None:
        """Forgets the current image and its features."""
        super().reset_image()
        self.early_features: Optional[torch.Tensor] = None
        self.robust_features: Optional[torch.Tensor] = None

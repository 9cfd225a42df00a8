"""`Sam2Predictor`: `sam2.SAM2ImagePredictor`'s API (and the SamPredictor methods the commands use) on
RobustSAM2, robust path by default; with `robust=False` it is SAM 2 itself."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL.Image import Image
from sam2.sam2_image_predictor import SAM2ImagePredictor

from ..device import check_precision, precision_autocast
from ..model.backbone import ImageEncoding
from .model import RobustSam2


@contextlib.contextmanager
def quiet_jit_script() -> Iterator[None]:
    """Silences torch's deprecation warning of `torch.jit.script`, which sam2's SAM2Transforms calls (when a
    SAM2ImagePredictor is built) and torch 2.10+ deprecates: not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        yield


class Sam2PromptTransform:
    """SAM 2's input frame for prompts given in pixels: the image is resized to S x S (the aspect ratio is
    not kept), so x scales by S / W and y by S / H. Method names are SamPredictor's `ResizeLongestSide`'s."""

    def __init__(self, size: int) -> None:
        self.target_length = size

    def apply_coords(self, coords: np.ndarray, original_size: Sequence[int]) -> np.ndarray:
        """(..., 2) pixel (x, y) -> the model frame, as float."""
        return self.apply_coords_torch(torch.as_tensor(np.asarray(coords, dtype=np.float32)), original_size).numpy()

    def apply_boxes(self, boxes: np.ndarray, original_size: Sequence[int]) -> np.ndarray:
        """(N, 4) pixel XYXY boxes -> the model frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: Sequence[int]) -> torch.Tensor:
        # SAM2Transforms.transform_coords's arithmetic (normalise, then scale), so prompts land on the same floats.
        h, w = original_size
        normalised = coords.float().clone()
        normalised[..., 0] = normalised[..., 0] / w
        normalised[..., 1] = normalised[..., 1] / h
        return normalised * self.target_length

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: Sequence[int]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)


class Sam2Predictor(SAM2ImagePredictor):
    """Encodes each image once (embedding, high-resolution features, early feature and, on the robust
    path, RobustSAM's image feature), then decodes any number of prompts.

    `set_image`, `set_image_batch`, `predict` (pixel prompts, `normalize_coords`), `predict_batch` and
    `get_image_embedding` are SAM2ImagePredictor's; `predict_torch` (prompts in the model frame, via
    `transform`), `original_size` and `reset_image` are SamPredictor's, so segmentation, evaluation and
    automatic masks run on it unchanged.
    """

    model: RobustSam2
    method = "robustsam"
    backbone = "sam2"

    def __init__(self, model: RobustSam2, robust: bool = True, precision: str = "fp32") -> None:
        check_precision(precision)
        with quiet_jit_script():
            super().__init__(model, mask_threshold=model.mask_threshold)
        self.robust = robust
        self.precision = precision
        size = model.image_size
        self._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        self.transform = Sam2PromptTransform(size)
        self.input_size = (size, size)
        self.encoding: Optional[ImageEncoding] = None
        self.robust_features: Optional[torch.Tensor] = None
        # The images of the last set_image_batch and their encoding, robust features and sizes.
        self._batch_images: list[np.ndarray] = []
        self._batch: Optional[tuple[ImageEncoding, Optional[torch.Tensor], list[tuple[int, int]]]] = None

    @torch.inference_mode()
    def set_image(self, image: Union[np.ndarray, Image], image_format: str = "RGB") -> None:
        """Encodes one RGB image (H, W, 3) uint8 array or PIL image (`image_format='BGR'` flips an array).
        An image of the last `set_image_batch` takes its encoding from there."""
        if isinstance(image, np.ndarray):
            if image_format == "BGR":
                image = np.ascontiguousarray(image[..., ::-1])
            size = image.shape[:2]
        elif isinstance(image, Image):
            size = (image.size[1], image.size[0])
        else:
            raise TypeError(f"set_image takes an (H, W, 3) array or a PIL image, not {type(image).__name__}")
        self.reset_image()
        index = self._batch_index(image)
        if index is None:
            self._encode(self._transforms(image)[None].to(self.device), [tuple(size)])
            return
        encoding, robust_features, sizes = self._batch
        one = slice(index, index + 1)
        self._use(encoding.select(one), None if robust_features is None else robust_features[one], [sizes[index]])

    def _batch_index(self, image: Union[np.ndarray, Image]) -> Optional[int]:
        """The position of `image` among the images of the last set_image_batch, or None."""
        if not isinstance(image, np.ndarray):
            return None
        for index, batch_image in enumerate(self._batch_images):
            if batch_image.shape == image.shape and np.array_equal(batch_image, image):
                return index
        return None

    @torch.inference_mode()
    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Encodes a list of RGB (H, W, 3) arrays together, for `predict_batch`. Afterwards `set_image` of one
        of them takes its encoding instead of encoding it again (code written one image at a time, like the
        automatic mask generator, runs on the batch)."""
        if not isinstance(image_list, list) or not all(isinstance(image, np.ndarray) for image in image_list):
            raise TypeError("set_image_batch takes a list of (H, W, 3) arrays")
        self.reset_image()
        self._batch_images, self._batch = [], None
        self._encode(self._transforms.forward_batch(image_list).to(self.device), [image.shape[:2] for image in image_list])
        self._batch_images = list(image_list)
        self._batch = (self.encoding, self.robust_features, self._orig_hw)
        self._is_batch = True

    def _encode(self, images: torch.Tensor, sizes: list[tuple[int, int]]) -> None:
        with precision_autocast(self.device, self.precision):
            encoding = self.model.encode_images(images).float()
        robust_features = None
        if self.robust:
            with precision_autocast(self.device, self.precision):
                robust_features = self.model.decoder.image_feature(encoding.embedding, encoding.early).float()
        self._use(encoding, robust_features, sizes)

    def _use(self, encoding: ImageEncoding, robust_features: Optional[torch.Tensor], sizes: list[tuple[int, int]]) -> None:
        """Makes `encoding` (and its robust features) the current image(s), of original sizes `sizes`."""
        self.encoding = encoding
        self.robust_features = robust_features
        self._features = {"image_embed": encoding.embedding, "high_res_feats": list(encoding.high_res)}
        self._orig_hw = sizes
        self._is_image_set = True

    @torch.inference_mode()
    def _predict(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SAM2ImagePredictor._predict on the chosen path, for N prompts of image `img_idx` in the model
        frame: points (N, P, 2) + labels (N, P), boxes (N, 4) or (N, 2, 2), mask_input (N, 1, S/4, S/4).
        Returns masks (N, C, H, W), iou (N, C), low-res logits (N, C, S/4, S/4) clamped to +-32."""
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        index = slice(img_idx, None) if img_idx == -1 else slice(img_idx, img_idx + 1)
        with precision_autocast(self.device, self.precision):
            sparse, dense = self.model.embed_prompts(point_coords, point_labels, boxes, mask_input)
            feature = self.robust_features[index] if self.robust else None
            out = self.model.decode_prompts(self.encoding.select(index), sparse, dense, feature, self.robust, return_features=False)
            low_res, iou = self.model.decoder.select(out, multimask_output)
        low_res, iou = low_res.float(), iou.float()
        masks = self._transforms.postprocess_masks(low_res, self._orig_hw[img_idx])
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, torch.clamp(low_res, -32.0, 32.0)

    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch: N prompts in the model frame (see `transform`) on the image set last."""
        return self._predict(point_coords, point_labels, boxes, mask_input, multimask_output, return_logits, img_idx=0)

    @property
    def original_size(self) -> Optional[tuple[int, int]]:
        """(H, W) of the image set (the first of a batch); None before set_image."""
        return None if self._orig_hw is None else tuple(self._orig_hw[0])

    @property
    def is_image_set(self) -> bool:
        return self._is_image_set

    @property
    def features(self) -> Optional[torch.Tensor]:
        """The image embedding (B, D, h, w)."""
        return None if self.encoding is None else self.encoding.embedding

    @property
    def early_features(self) -> Optional[torch.Tensor]:
        return None if self.encoding is None else self.encoding.early

    def reset_image(self) -> None:
        """Forgets the current image(s) and their features."""
        self.reset_predictor()
        self.encoding = None
        self.robust_features = None

"""`OnnxPredictor`: `segment_anything.SamPredictor`'s interface on an ONNX export, run by onnxruntime."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from ..errors import InputError
from .onnx_export import DECODER_FILE, ENCODER_FILE, FORMAT, MANIFEST, QUANTIZED_DECODER_FILE

PAD_LABEL = -1.0
BOX_LABELS = (2.0, 3.0)


@dataclass(frozen=True)
class OnnxModelCard:
    """The exported network as SamPredictor and SamAutomaticMaskGenerator read a model:
    `image_format`, `mask_threshold`, `image_encoder.img_size`; plus what the manifest says."""

    manifest: dict[str, Any]
    image_format: str = "RGB"

    @property
    def mask_threshold(self) -> float:
        return float(self.manifest["mask_threshold"])

    @property
    def image_encoder(self) -> SimpleNamespace:
        return SimpleNamespace(img_size=int(self.manifest["image_size"]))

    @property
    def robust(self) -> bool:
        return self.manifest["mode"] == "robust"


def read_manifest(onnx_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an `export_onnx` folder; InputError when the folder is not one."""
    path = Path(onnx_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{onnx_dir}: no {MANIFEST} (not a folder written by robustsam export --onnx)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a {FORMAT} manifest")
    return manifest


class OnnxPredictor(SamPredictor):
    """SamPredictor on onnxruntime: `set_image` runs the encoder model once, `predict` / `predict_torch`
    run the decoder model once per prompt, with SAM's arguments and return shapes.

    Arguments:
      onnx_dir: a folder written by `export_onnx` (`robustsam export --onnx`).
      quantized: run decoder_int8.onnx instead of decoder.onnx.
      threads: onnxruntime intra-op threads (None: onnxruntime's default).

    An export made with `return_single_mask` returns one mask per prompt, chosen by SAM's exporter
    rule (token 0 for three or more points, padding included, else the best multimask token), and
    refuses `multimask_output=True`.
    """

    model: OnnxModelCard  # type: ignore[assignment]

    def __init__(self, onnx_dir: str | os.PathLike, quantized: bool = False, threads: Optional[int] = None) -> None:
        import onnxruntime

        manifest = read_manifest(onnx_dir)
        decoder_file = QUANTIZED_DECODER_FILE if quantized else DECODER_FILE
        if quantized and not manifest.get("quantized_decoder"):
            raise InputError(f"{onnx_dir}: holds no quantized decoder (export with --quantize)")
        for name in (ENCODER_FILE, decoder_file):
            if not (Path(onnx_dir) / name).is_file():
                raise InputError(f"{Path(onnx_dir) / name}: missing from the export")
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.encoder = onnxruntime.InferenceSession(str(Path(onnx_dir) / ENCODER_FILE), options, providers=providers)
        self.decoder = onnxruntime.InferenceSession(str(Path(onnx_dir) / decoder_file), options, providers=providers)
        self.model = OnnxModelCard(manifest)
        self.robust = self.model.robust
        self.single_mask = bool(manifest["return_single_mask"])
        self.transform = ResizeLongestSide(int(manifest["image_size"]))
        self._mean = torch.tensor(manifest["pixel_mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(manifest["pixel_std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encodes a 1x3xHxW image already resized with `self.transform` (long side = model input)."""
        size = self.transform.target_length
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3) or max(transformed_image.shape[2:]) != size:
            raise ValueError(f"set_torch_image input must be 1x3xHxW with long side {size}, got {tuple(transformed_image.shape)}")
        self.reset_image()
        self.original_size = tuple(original_image_size)
        self.input_size = tuple(transformed_image.shape[-2:])
        # Sam.preprocess: normalise, then pad bottom-right to the square input.
        image = (transformed_image.float().cpu() - self._mean) / self._std
        height, width = self.input_size
        image = F.pad(image, (0, size - width, 0, size - height))
        outputs = self.encoder.run(None, {"image": image.numpy()})
        self.features = torch.from_numpy(outputs[0])
        if self.robust:
            self.early_features, self.robust_features = torch.from_numpy(outputs[1]), torch.from_numpy(outputs[2])
        self.is_image_set = True

    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch for N prompts: points (N, P, 2) + labels (N, P), boxes (N, 4),
        mask_input (N, 1, 256, 256), in the transformed frame.

        Returns masks (N, C, H, W), iou (N, C), low-res logits (N, C, 256, 256); C = 3 or 1.
        """
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        if self.single_mask and multimask_output:
            raise ValueError("this export returns a single mask (--return-single-mask): call with multimask_output=False")
        if point_coords is None and boxes is None:
            raise ValueError("the ONNX decoder needs points or a box")
        prompts = (point_coords, point_labels, boxes, mask_input)
        rows = max(len(prompt) for prompt in prompts if prompt is not None)
        outputs = [self._decode_one(*(None if p is None else p[i] for p in prompts)) for i in range(rows)]
        masks, iou, low_res = (torch.cat(parts) for parts in zip(*outputs))
        if not self.single_mask:
            index = slice(1, None) if multimask_output else slice(0, 1)
            masks, iou, low_res = masks[:, index], iou[:, index], low_res[:, index]
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def _decode_one(
        self,
        coords: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
        box: Optional[torch.Tensor],
        mask: Optional[torch.Tensor],
    ) -> list[torch.Tensor]:
        """One prompt in SAM's ONNX form: points, then box corners labelled 2 and 3, or a padding point."""
        points = [] if coords is None else [coords.reshape(-1, 2).float().cpu()]
        point_labels = [] if labels is None else [labels.reshape(-1).float().cpu()]
        if box is not None:
            points.append(box.reshape(2, 2).float().cpu())
            point_labels.append(torch.tensor(BOX_LABELS))
        else:
            # SAM's prompt encoder pads points without a box with one 'not a point'.
            points.append(torch.zeros(1, 2))
            point_labels.append(torch.tensor([PAD_LABEL]))
        side = 4 * int(self.model.manifest["embedding_size"])
        feed = {
            "image_embeddings": self.features.numpy(),
            "point_coords": torch.cat(points)[None].numpy(),
            "point_labels": torch.cat(point_labels)[None].numpy(),
            "mask_input": (torch.zeros(1, 1, side, side) if mask is None else mask.reshape(1, 1, side, side).float().cpu()).numpy(),
            "has_mask_input": np.array([0.0 if mask is None else 1.0], dtype=np.float32),
            "orig_im_size": np.array(self.original_size, dtype=np.float32),
        }
        if self.robust:
            feed["robust_features"] = self.robust_features.numpy()
        return [torch.from_numpy(array) for array in self.decoder.run(None, feed)]

    def reset_image(self) -> None:
        """Forgets the current image and its features."""
        super().reset_image()
        self.early_features: Optional[torch.Tensor] = None
        self.robust_features: Optional[torch.Tensor] = None

"""Tracking objects through a video with SAM 2's video predictor (`sam2.SAM2VideoPredictor`, reused
as it is), frames decoded as they are needed and memory held flat with the video's length.

    predictor = load_video_predictor("sam2.1_hiera_t.pt", device="cuda")
    for frame, masks in track(predictor, open_source("clip.mp4"), prompts):   # masks: obj_id -> (H, W) bool
        ...

Two things keep memory flat. SAM 2's `init_state` reads every frame into one tensor; here it is given
`LazyFrames` instead, which decodes a frame when the predictor asks for it (the source keeps a few
decoded frames). And SAM 2 keeps every tracked frame's memory features; `track` drops those no
later frame can attend to (further back than the memory bank and object-pointer window reach),
keeping the ones the backward pass will start from. The masks are SAM 2's: nothing it attends to
is dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Sequence
from unittest import mock

import numpy as np
import torch
from PIL import Image

from ..device import resolve_device
from ..errors import CheckpointError
from ..model.checkpoint import read_state_dict
from .prompts import VideoPrompt
from .sources import FrameSource

# SAM 2's input normalisation (sam2.utils.misc.load_video_frames' defaults: ImageNet statistics).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class LazyFrames:
    """What SAM 2's video predictor reads as `inference_state["images"]`: `len()` and frame i as a
    normalised (3, S, S) float tensor, resized as `sam2.utils.misc` resizes frame files (Pillow,
    to S x S), decoded from `source` when asked for."""

    def __init__(self, source: FrameSource, image_size: int) -> None:
        self.source, self.image_size = source, image_size
        self.mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGE_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        resized = Image.fromarray(self.source[index]).resize((self.image_size, self.image_size))
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - self.mean) / self.std


def load_video_predictor(checkpoint: str | os.PathLike, model_type: Optional[str] = None, device: str | torch.device = "cpu"):
    """sam2's SAM2VideoPredictor (built by `sam2.build_sam.build_sam2_video_predictor` from the
    package's configuration files) with the SAM 2 weights of `checkpoint` (Meta's or a RobustSAM2
    checkpoint: its robust modules are not used here), read strictly; the type is inferred unless named."""
    from sam2.build_sam import build_sam2_video_predictor

    from ..sam2 import get_sam2_config, infer_sam2_type, is_sam2_robust_key, is_sam2_state

    path = Path(checkpoint)
    state = read_state_dict(path)
    if not is_sam2_state(state):
        raise CheckpointError(f"{path}: not a SAM 2 checkpoint (tracking runs on SAM 2's video predictor)")
    model_type = model_type or infer_sam2_type(state, path)
    config = get_sam2_config(model_type)
    device = resolve_device(device)
    predictor = build_sam2_video_predictor(config.config_file, None, device=str(device),
                                           hydra_overrides_extra=list(config.overrides))
    predictor.fill_hole_area = 0  # its hole filling needs sam2's CUDA extension, which the `sam2` extra does not build
    sam2_state = {key: value for key, value in state.items() if not is_sam2_robust_key(key)}
    own = predictor.state_dict()
    missing = [key for key in own if key not in sam2_state]
    wrong = [key for key in sam2_state if key not in own or own[key].shape != sam2_state[key].shape]
    if missing or wrong:
        key = (missing or wrong)[0]
        raise CheckpointError(f"{path}: does not fit {model_type} ({len(missing)} weights missing, {len(wrong)} unexpected "
                              f"or of another shape, e.g. {key})")
    predictor.load_state_dict(sam2_state)
    predictor.memory_attention.register_forward_pre_hook(_memory_as_features, with_kwargs=True)
    return predictor.eval()


def _memory_as_features(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Reads SAM 2's stored memory (kept in bfloat16) in the current features' dtype. Under CUDA
    autocast, as SAM 2 runs, this changes nothing; on the CPU it lets the model run in float32,
    where bfloat16 convolutions ran 4x slower."""
    features = kwargs["curr"][0] if isinstance(kwargs["curr"], list) else kwargs["curr"]
    kwargs["memory"] = kwargs["memory"].to(features.dtype)
    return args, kwargs


def memory_reach(predictor) -> int:
    """How many frames back SAM 2 looks from the frame it tracks: its memory bank (num_maskmem - 1
    frames, every `memory_temporal_stride_for_eval`-th) and its object pointers."""
    bank = (predictor.num_maskmem - 1) * predictor.memory_temporal_stride_for_eval + 1
    pointers = predictor.max_obj_ptrs_in_encoder if predictor.use_obj_ptrs_in_encoder else 0
    return max(bank, pointers)


def open_state(predictor, source: FrameSource) -> dict:
    """SAM 2's inference state for `source`, its frames read lazily (SAM 2 would read them all)."""
    height, width = source.info.size
    frames = LazyFrames(source, predictor.image_size)
    loader = mock.patch("sam2.sam2_video_predictor.load_video_frames", return_value=(frames, height, width))
    with loader:
        return predictor.init_state(str(source.path), offload_video_to_cpu=True)


def add_prompts(predictor, state: dict, prompts: Sequence[VideoPrompt]) -> None:
    """Gives SAM 2 every prompt (boxes and points in pixels; masks as they are), in frame order."""
    for prompt in sorted(prompts, key=lambda p: p.frame):
        if prompt.mask is not None:
            predictor.add_new_mask(state, prompt.frame, prompt.obj_id, torch.from_numpy(prompt.mask))
        if prompt.prompt is not None:
            geometry = prompt.prompt
            points = np.array(geometry.points, dtype=np.float32) if geometry.points else None
            labels = np.array(geometry.labels, dtype=np.int32) if geometry.points else None
            box = np.array(geometry.box, dtype=np.float32) if geometry.box is not None else None
            predictor.add_new_points_or_box(state, prompt.frame, prompt.obj_id, points=points, labels=labels, box=box,
                                            clear_old_points=prompt.mask is None)


def _forget(state: dict, frame: int, reach: int, keep_after: int, reverse: bool) -> None:
    """Drops the memory of frames more than `reach` behind `frame` in the direction of travel,
    except (going forward) the first `reach` after `keep_after`, where the backward pass starts."""
    for outputs in state["output_dict_per_obj"].values():
        stored = outputs["non_cond_frame_outputs"]
        if reverse:
            stale = [t for t in stored if t > frame + reach]
        else:
            stale = [t for t in stored if t < frame - reach and not keep_after <= t <= keep_after + reach]
        for t in stale:
            del stored[t]


@torch.inference_mode()
def track(predictor, source: FrameSource, prompts: Sequence[VideoPrompt]) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """Yields (frame, {obj_id: (H, W) bool mask}) for every frame of `source` once: forward from the
    first prompted frame to the end, then backward to frame 0 (SAM 2's propagation both ways)."""
    reach = memory_reach(predictor)
    first = min(prompt.frame for prompt in prompts)
    # On CUDA sam2 runs under bfloat16 autocast, as its own demos do; it draws a tqdm bar per pass
    # (callers show one bar over all videos instead).
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=predictor.device.type == "cuda")
    with autocast, mock.patch("sam2.sam2_video_predictor.tqdm", lambda frames, **_: frames):
        state = open_state(predictor, source)
        add_prompts(predictor, state, prompts)
        for reverse in (False, True):
            for frame, obj_ids, logits in predictor.propagate_in_video(state, reverse=reverse):
                _forget(state, frame, reach, first, reverse)
                if reverse and frame == first:
                    continue  # already given by the forward pass
                masks = (logits[:, 0] > 0).cpu().numpy()
                yield frame, {obj_id: masks[index] for index, obj_id in enumerate(obj_ids)}

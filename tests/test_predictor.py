"""RobustPredictor on a small model: SamPredictor compatibility, batching, caching, precision."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import MaskDecoder, Sam

from core import RobustPredictor, resolve_device
from core.model.checkpoint import is_robust_key

from .test_parity import REFERENCE_LIMIT

BOXES = np.array([[10.0, 12.0, 90.0, 70.0], [60.0, 60.0, 155.0, 90.0], [0.0, 0.0, 159.0, 95.0]])
POINTS = np.array([[[60.0, 40.0], [120.0, 75.0]], [[20.0, 80.0], [60.0, 40.0]], [[150.0, 10.0], [100.0, 75.0]]])
LABELS = np.array([[1, 0], [1, 1], [0, 1]])
# bf16/fp16 autocast against float32: relative error of the low-res logits.
LOW_PRECISION_LIMIT = 0.05


def plain_sam(model) -> Sam:
    """segment_anything's own Sam and MaskDecoder holding the SAM part of `model`'s weights."""
    config = model.config
    decoder = MaskDecoder(
        transformer_dim=config.prompt_embed_dim,
        transformer=model.mask_decoder.transformer,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    sam = Sam(model.image_encoder, model.prompt_encoder, decoder, list(model.pixel_mean.flatten()), list(model.pixel_std.flatten()))
    sam.load_state_dict({k: v for k, v in model.state_dict().items() if not is_robust_key(k)})
    return sam.eval()


def test_sam_path_equals_segment_anything_bit_for_bit(micro_model, image) -> None:
    theirs = SamPredictor(plain_sam(micro_model))
    theirs.set_image(image)
    ours = RobustPredictor(micro_model, robust=False)
    ours.set_image(image)
    for kwargs in ({"box": BOXES[0]}, {"point_coords": POINTS[0], "point_labels": LABELS[0]}):
        for multimask in (True, False):
            expected = theirs.predict(**kwargs, multimask_output=multimask, return_logits=True)
            actual = ours.predict(**kwargs, multimask_output=multimask, return_logits=True)
            assert all(np.array_equal(a, e) for a, e in zip(actual, expected))


@pytest.mark.parametrize("robust", [True, False])
@pytest.mark.parametrize("prompt", ["boxes", "points", "both"])
@pytest.mark.parametrize("cpu_chunk", [2, 64])
def test_batched_prompts_equal_single_calls(micro_model, image, robust: bool, prompt: str, cpu_chunk: int, monkeypatch) -> None:
    """Three prompts at once, decoded as 2 + 1 (the CPU's chunks) or as one batch, equal three calls."""
    monkeypatch.setattr("core.inference.predictor.CPU_PROMPT_CHUNK", cpu_chunk)
    predictor = RobustPredictor(micro_model, robust=robust)
    predictor.set_image(image)
    size = predictor.original_size
    boxes = torch.as_tensor(predictor.transform.apply_boxes(BOXES, size), dtype=torch.float) if prompt != "points" else None
    coords = torch.as_tensor(predictor.transform.apply_coords(POINTS, size), dtype=torch.float) if prompt != "boxes" else None
    labels = torch.as_tensor(LABELS) if coords is not None else None
    masks, iou, low_res = predictor.predict_torch(coords, labels, boxes, multimask_output=True)
    assert masks.shape == (3, 3, *image.shape[:2]) and iou.shape == (3, 3) and low_res.shape == (3, 3, 32, 32)
    for i in range(3):
        kwargs = {}
        if prompt != "points":
            kwargs["box"] = BOXES[i]
        if prompt != "boxes":
            kwargs.update(point_coords=POINTS[i], point_labels=LABELS[i])
        one_masks, one_iou, one_low = predictor.predict(**kwargs, multimask_output=True)
        np.testing.assert_allclose(low_res[i].numpy(), one_low, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(iou[i].numpy(), one_iou, rtol=1e-5, atol=1e-5)


def test_robust_and_sam_paths_differ_and_select_tokens(micro_model, image) -> None:
    predictor = RobustPredictor(micro_model)
    predictor.set_image(image)
    multi = predictor.predict(box=BOXES[0], multimask_output=True, return_logits=True)
    single = predictor.predict(box=BOXES[0], multimask_output=False, return_logits=True)
    assert multi[0].shape == (3, *image.shape[:2]) and multi[1].shape == (3,)
    assert single[0].shape == (1, *image.shape[:2]) and single[1].shape == (1,)
    with torch.inference_mode():
        sparse, dense = micro_model.prompt_encoder(
            points=None, boxes=torch.as_tensor(predictor.transform.apply_boxes(BOXES[:1], predictor.original_size), dtype=torch.float), masks=None
        )
        out = micro_model.mask_decoder.decode(
            predictor.features, micro_model.prompt_encoder.get_dense_pe(), sparse, dense, predictor.robust_features
        )
    np.testing.assert_array_equal(out.masks[0, 1:].numpy(), multi[2])
    np.testing.assert_array_equal(out.masks[0, :1].numpy(), single[2])
    predictor.robust = False
    sam_logits = predictor.predict(box=BOXES[0], multimask_output=True, return_logits=True)[2]
    assert np.abs(sam_logits - multi[2]).max() > 1e-2


def test_set_image_encodes_once_and_predict_only_decodes(micro_model, image, monkeypatch) -> None:
    predictor = RobustPredictor(micro_model)
    predictor.set_image(image)
    feature = predictor.robust_features
    assert feature is not None and feature.shape == (1, 8, 32, 32)

    def forbidden(*args, **kwargs):
        raise AssertionError("the image was encoded again")

    monkeypatch.setattr(micro_model, "encode", forbidden)
    monkeypatch.setattr(micro_model.mask_decoder, "image_feature", forbidden)
    for box in BOXES:
        predictor.predict(box=box)
    assert predictor.robust_features is feature


def test_switching_to_robust_after_sam_set_image(micro_model, image) -> None:
    sam_first = RobustPredictor(micro_model, robust=False, exact_sam=False)
    sam_first.set_image(image)
    assert sam_first.robust_features is None
    sam_first.robust = True
    robust_first = RobustPredictor(micro_model)
    robust_first.set_image(image)
    assert np.array_equal(sam_first.predict(box=BOXES[1])[2], robust_first.predict(box=BOXES[1])[2])


def test_reset_and_errors(micro_model, image) -> None:
    predictor = RobustPredictor(micro_model)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(box=BOXES[0])
    predictor.set_image(image)
    assert predictor.get_image_embedding().shape == (1, 64, 8, 8)
    predictor.reset_image()
    assert predictor.features is None and predictor.early_features is None and predictor.robust_features is None
    with pytest.raises(ValueError, match="precision"):
        RobustPredictor(micro_model, precision="int8")
    with pytest.raises(ValueError, match="long side 128"):
        predictor.set_torch_image(torch.zeros(1, 3, 64, 64), (64, 64))


def test_bgr_input_matches_rgb(micro_model, image) -> None:
    predictor = RobustPredictor(micro_model)
    predictor.set_image(image)
    rgb = predictor.predict(box=BOXES[0])[2]
    predictor.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    assert np.array_equal(predictor.predict(box=BOXES[0])[2], rgb)


def test_bf16_autocast_stays_close_to_fp32(micro_model, image) -> None:
    reference = RobustPredictor(micro_model)
    reference.set_image(image)
    low = RobustPredictor(micro_model, precision="bf16")
    low.set_image(image)
    expected = reference.predict(box=BOXES[0], return_logits=True)[2]
    actual = low.predict(box=BOXES[0], return_logits=True)[2]
    assert actual.dtype == np.float32
    assert relative_error(actual, expected) < LOW_PRECISION_LIMIT


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.mark.cuda
@pytest.mark.parametrize("robust", [True, False], ids=["robust", "sam"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_matches_cpu(micro_model, image, robust, precision, monkeypatch) -> None:
    # TF32 would round matrix products to 10 mantissa bits: the comparison is of float32 arithmetic.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cpu = RobustPredictor(micro_model, robust=robust)
    cpu.set_image(image)
    cuda = RobustPredictor(copy.deepcopy(micro_model).cuda(), robust=robust, precision=precision)
    cuda.set_image(image)
    assert cuda.features.device.type == "cuda"
    expected = cpu.predict(box=BOXES[0], return_logits=True)
    actual = cuda.predict(box=BOXES[0], return_logits=True)
    limit = REFERENCE_LIMIT if precision == "fp32" else LOW_PRECISION_LIMIT
    assert relative_error(actual[2], expected[2]) < limit
    assert relative_error(actual[1], expected[1]) < limit


def test_sam_style_forward_equals_predictor(micro_model, image) -> None:
    predictor = RobustPredictor(micro_model)
    predictor.set_image(image)
    transformed = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)
    box = torch.as_tensor(predictor.transform.apply_boxes(BOXES[:2], image.shape[:2]), dtype=torch.float)
    with torch.inference_mode():
        (out,) = micro_model([{"image": transformed, "original_size": image.shape[:2], "boxes": box}], multimask_output=False)
    expected = predictor.predict_torch(None, None, box, multimask_output=False)
    torch.testing.assert_close(out["low_res_logits"], expected[2], rtol=1e-5, atol=1e-5)
    assert (out["masks"] != expected[0]).float().mean() < 1e-3


def test_auto_device_is_cpu_here() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type in (expected, "mps")
    assert resolve_device("cpu") == torch.device("cpu")


def test_robust_keys_are_the_only_new_parameters(micro_model) -> None:
    sam_keys = set(plain_sam(micro_model).state_dict())
    new_keys = set(micro_model.state_dict()) - sam_keys
    assert new_keys and all(is_robust_key(key) for key in new_keys)

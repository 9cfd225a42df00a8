"""The SAM 2 path equals `sam2.SAM2ImagePredictor` on the same weights: SAM 2.1 Hiera-T (at a 128 px input
to stay fast) with synthetic weights keyed by its real state-dict names. Meta's loader
(`sam2.build_sam._load_checkpoint`) loads the released files strictly into the same SAM2Base, so these
names are the released checkpoints' names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")
from sam2.build_sam import build_sam2  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402
from core.sam2 import Sam2Predictor, build_sam2_model, get_sam2_config, is_sam2_robust_key  # noqa: E402

pytestmark = pytest.mark.parity

SIZE = 128
# Measured: 8e-7 relative on logits, 1e-7 absolute on scores (torch 2.14.1, CPU, float32).
LOGIT_LIMIT = 1e-5
SCORE_LIMIT = 1e-5

BOX = np.array([40.0, 30.0, 190.0, 150.0])
POINTS = np.array([[80.0, 70.0], [150.0, 120.0], [60.0, 140.0]])
LABELS = np.array([1, 1, 0])
CASES = {
    "box": {"box": BOX},
    "points": {"point_coords": POINTS, "point_labels": LABELS},
    "box_points": {"box": BOX, "point_coords": POINTS[:1], "point_labels": LABELS[:1]},
}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_sam2_model("sam2.1_hiera_t", image_size=SIZE).eval()


@pytest.fixture(scope="module")
def state(model) -> dict[str, torch.Tensor]:
    return dict(synthetic_state_dict({key: value.shape for key, value in model.state_dict().items()}))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return (np.random.default_rng(3).random((180, 240, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def reference(state, image) -> SAM2ImagePredictor:
    config = get_sam2_config("sam2.1_hiera_t")
    model = build_sam2(config.config_file, None, device="cpu", hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    model.load_state_dict({key: value for key, value in state.items() if not is_sam2_robust_key(key)})
    predictor = SAM2ImagePredictor(model)
    # SAM2ImagePredictor hard-codes the feature sizes of a 1024 input.
    predictor._bb_feat_sizes = [(SIZE // 4, SIZE // 4), (SIZE // 8, SIZE // 8), (SIZE // 16, SIZE // 16)]
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def ours(model, state, image) -> Sam2Predictor:
    model.load_state_dict(state)
    predictor = Sam2Predictor(model, robust=False)
    predictor.set_image(image)
    return predictor


def assert_same(actual: tuple, expected: tuple) -> None:
    masks, scores, logits = actual
    ref_masks, ref_scores, ref_logits = expected
    assert logits.shape == ref_logits.shape and masks.shape == ref_masks.shape
    assert np.linalg.norm(logits - ref_logits) / np.linalg.norm(ref_logits) <= LOGIT_LIMIT
    assert np.abs(scores - ref_scores).max() <= SCORE_LIMIT
    if masks.dtype == bool:  # a pixel may flip only where the logit sits at the threshold: a handful at most
        assert (masks != ref_masks).mean() < 1e-4
    else:
        assert np.abs(masks - ref_masks).max() <= LOGIT_LIMIT * np.abs(ref_masks).max()


@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("case", list(CASES))
def test_sam2_path_equals_sam2_image_predictor(ours, reference, case: str, multimask: bool) -> None:
    kwargs = CASES[case]
    assert_same(ours.predict(**kwargs, multimask_output=multimask), reference.predict(**kwargs, multimask_output=multimask))


def test_mask_input_and_logits(ours, reference) -> None:
    _, scores, logits = reference.predict(box=BOX, multimask_output=True)
    mask_input = logits[np.argmax(scores)][None]
    kwargs = {"point_coords": POINTS[:1], "point_labels": LABELS[:1], "mask_input": mask_input, "multimask_output": False}
    assert_same(ours.predict(**kwargs, return_logits=True), reference.predict(**kwargs, return_logits=True))


def test_batch_api_equals_reference(ours, reference, image) -> None:
    images = [image, np.ascontiguousarray(image[::-1])]
    ours.set_image_batch(images)
    reference.set_image_batch(images)
    try:
        kwargs = {"box_batch": [BOX, BOX[[1, 0, 3, 2]]], "multimask_output": True}
        for actual, expected in zip(zip(*ours.predict_batch(**kwargs)), zip(*reference.predict_batch(**kwargs))):
            assert_same(actual, expected)
    finally:
        ours.set_image(image)
        reference.set_image(image)


def test_prompt_transform_matches_sam2(ours, reference) -> None:
    """Commands give prompts in the model frame through `transform` and `predict_torch`."""
    coords = torch.as_tensor(ours.transform.apply_coords(POINTS[None], ours.original_size))
    masks, scores, logits = ours.predict_torch(coords, torch.as_tensor(LABELS[None]), multimask_output=True)
    expected = reference.predict(point_coords=POINTS, point_labels=LABELS, multimask_output=True)
    assert_same((masks[0].numpy(), scores[0].numpy(), logits[0].clamp(-32, 32).numpy()), expected)

"""set_image_batch / predict_batch (SAM 2's batch API) on every predictor: equal to one image at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import RobustPredictor, build_robustsam
from core.errors import InputError
from core.inference.batching import ImageBatches, parse_image_batch
from core.model.default_model import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.usefixtures("one_thread")

# Images of different sizes and aspect ratios, each with one box and one point prompt.
SIZES = [(60, 80), (96, 40), (128, 128)]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = []
    for height, width in SIZES:
        image = (rng.random((height, width, 3)) * 60).astype(np.uint8)
        image[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] += 150
        images.append(image)
    return images


def _boxes() -> list[np.ndarray]:
    return [np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.8]) for h, w in SIZES]


def _points() -> list[np.ndarray]:
    return [np.array([[w * 0.5, h * 0.5], [w * 0.1, h * 0.1]]) for h, w in SIZES]


def _labels() -> list[np.ndarray]:
    return [np.array([1, 0]) for _ in SIZES]


def _assert_close(batched: np.ndarray, alone: np.ndarray) -> None:
    scale = max(float(np.abs(alone).max()), 1e-12)
    assert float(np.abs(batched - alone).max()) <= 1e-5 * scale


@pytest.fixture(scope="module")
def robustsam():
    return build_robustsam(None, DEFAULT_CHECKPOINT)


def _glesam_predictor(sam):
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from core.glesam import GleSam, build_enhancer
    from core.inference import GleSamPredictor

    torch.manual_seed(0)
    return GleSamPredictor(GleSam(sam, build_enhancer(sam, lora_rank=4).eval()))


@pytest.fixture(params=["robust", "sam", "glesam"])
def predictor(request, robustsam) -> RobustPredictor:
    if request.param == "glesam":
        return _glesam_predictor(robustsam)
    return RobustPredictor(robustsam, robust=request.param == "robust")


def test_predict_batch_equals_one_image_at_a_time(predictor: RobustPredictor) -> None:
    images = _images()
    predictor.set_image_batch(images)
    masks, ious, low_res = predictor.predict_batch(_points(), _labels(), _boxes(), return_logits=True)
    for index, image in enumerate(images):
        predictor.set_image(np.ascontiguousarray(image.copy()[..., ::-1][..., ::-1]))  # a copy: encoded afresh
        alone = predictor.predict(_points()[index], _labels()[index], _boxes()[index], return_logits=True)
        assert masks[index].shape == (3, *SIZES[index])
        for batched, single in zip((masks[index], ious[index], low_res[index]), alone):
            _assert_close(batched, single)


def test_several_prompts_per_image_and_normalised_coordinates(predictor: RobustPredictor) -> None:
    images = _images()
    predictor.set_image_batch(images)
    boxes = [np.stack([box, box * 0.5]) for box in _boxes()]
    masks, ious, _ = predictor.predict_batch(box_batch=boxes, multimask_output=False)
    fractions = [box / np.array([w, h, w, h]) for box, (h, w) in zip(boxes, SIZES)]
    masks_normalised, _, _ = predictor.predict_batch(box_batch=fractions, multimask_output=False, normalize_coords=False)
    for index, image in enumerate(images):
        assert masks[index].shape == (2, 1, *SIZES[index]) and ious[index].shape == (2, 1)
        assert np.array_equal(masks[index], masks_normalised[index])
        predictor.set_image(image.copy())
        for row, box in enumerate(boxes[index]):
            alone, _, _ = predictor.predict(box=box, multimask_output=False)
            assert np.array_equal(masks[index][row], alone)


def test_set_image_of_a_batch_image_reuses_its_embedding(robustsam) -> None:
    predictor = RobustPredictor(robustsam)
    images = _images()
    predictor.set_image_batch(images)
    calls = []
    encode = robustsam.encode
    robustsam.encode = lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs)
    try:
        predictor.set_image(images[1])
        reused = predictor.features
        predictor.set_image(images[1].copy())  # equal pixels: still the batch's
        assert not calls and predictor.features is reused
        predictor.set_image(images[1][::-1].copy())  # another image: encoded
        assert len(calls) == 1
    finally:
        robustsam.encode = encode
    fresh = RobustPredictor(robustsam)
    fresh.set_image(images[1])
    assert torch.equal(fresh.features, reused) and torch.equal(fresh.robust_features, predictor._batch[1].robust_features)


def test_predict_batch_needs_a_batch(robustsam) -> None:
    predictor = RobustPredictor(robustsam)
    predictor.set_image(_images()[0])
    with pytest.raises(RuntimeError, match="set_image_batch"):
        predictor.predict_batch(box_batch=_boxes()[:1])


class _SmallGpu:
    """A predictor whose batches of more than `fits` images run out of memory."""

    device = torch.device("cpu")

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.batches: list[int] = []

    def set_image_batch(self, images: list[np.ndarray]) -> None:
        if len(images) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        self.batches.append(len(images))


def test_out_of_memory_halves_the_batch_and_the_run_goes_on() -> None:
    predictor = _SmallGpu(fits=2)
    batches = ImageBatches(predictor, 4)
    seen = [(item, future.result()[0, 0, 0]) for item, future in batches(range(7), lambda item: np.full((2, 2, 3), item, np.uint8))]
    assert seen == [(item, item) for item in range(7)]
    assert predictor.batches == [2, 2, 2, 1] and batches.size == 2


def test_unreadable_images_are_left_out_of_their_batch() -> None:
    predictor = _SmallGpu(fits=4)

    def read(item: int) -> np.ndarray:
        if item == 1:
            raise InputError("1.png: not a readable image")
        return np.zeros((2, 2, 3), np.uint8)

    results = list(ImageBatches(predictor, 3)(range(4), read))
    assert [item for item, _ in results] == [0, 1, 2, 3] and predictor.batches == [2, 1]
    with pytest.raises(InputError, match="1.png"):
        results[1][1].result()


@pytest.mark.parametrize("value", [0, -1, "0", "-3", "two", "1.5", ""])
def test_image_batch_must_be_positive_or_auto(value) -> None:
    with pytest.raises(InputError, match="--image-batch: must be a positive number of images or 'auto'"):
        parse_image_batch(value)
    assert parse_image_batch("auto") == "auto" and parse_image_batch("8") == 8

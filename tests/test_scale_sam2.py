"""SAM 2 checkpoints beyond one image at a time: `segment` on one process, with `--shard 0/2` + `--shard 1/2`
and with `--gpus 2` (torchrun workers, gloo on CPU) writes the same bytes, and `eval` over two shards the
same results; `prior` runs SAM 2's generator through the predictor; `set_image` of an image of the last
`set_image_batch` does not encode it again."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

pytest.importorskip("sam2")
from core.inference import open_predictor  # noqa: E402
from core.inference.amg import automatic_mask_generator  # noqa: E402
from priors.encoding import gray_coded_map, masks_from_records  # noqa: E402
from priors.generate import PRIOR_GENERATOR_DEFAULTS  # noqa: E402
from tests.test_sam2 import micro2_checkpoint, micro2_state  # noqa: E402,F401 (fixtures)
from tests.test_scale import eval_data, job, outputs, pictures, run, split_runs  # noqa: E402,F401 (fixtures and helpers)

BOX = np.array([4.0, 6.0, 40.0, 30.0])
PRIOR_SETTINGS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def test_segment_on_sam2_does_not_depend_on_the_split(job, micro2_checkpoint, one_thread) -> None:
    command = ["segment", str(job["images"]), "--prompts", str(job["prompts"]), "--checkpoint", str(micro2_checkpoint),
               "--format", "png", "--device", "cpu"]
    runs = split_runs(command, job["root"] / "sam2_segment")
    expected = outputs(runs["one"])
    assert sum(name.endswith(".png") for name in expected) == 6  # one mask per prompt
    assert outputs(runs["shards"]) == expected
    assert outputs(runs["gpus"]) == expected


def test_eval_on_sam2_does_not_depend_on_the_split(eval_data, micro2_checkpoint, tmp_path, one_thread) -> None:
    def evaluate(out: Path, *args: str):
        return run("eval", "--data", str(eval_data), "--model", f"r2={micro2_checkpoint}", "--model", f"s2={micro2_checkpoint}:sam",
                   "--prompt", "box", "--limit", "2", "--device", "cpu", "--out", str(out), *args)

    single = evaluate(tmp_path / "one")
    assert single.exit_code == 0, single.output
    for shard in ("0/2", "1/2"):
        part = evaluate(tmp_path / "shards", "--shard", shard)
        assert part.exit_code == 0, part.output
    expected = (tmp_path / "one" / "results.json").read_text()
    assert '"r2"' in expected and '"s2"' in expected
    assert (tmp_path / "shards" / "results.json").read_text() == expected


def test_prior_on_sam2_runs_sam2s_generator_through_the_predictor(pictures, micro2_checkpoint, tmp_path, one_thread) -> None:
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in PRIOR_SETTINGS.items()]
    result = run("prior", str(pictures), "--task", "deblur", "--features", "--checkpoint", str(micro2_checkpoint),
                 "--device", "cpu", "-o", str(tmp_path), *flags)
    assert result.exit_code == 0, result.output
    assert "5 written" in result.output

    image = iio.imread(pictures / "p0.png")
    predictor = open_predictor(micro2_checkpoint)
    generator = automatic_mask_generator(predictor, **{**PRIOR_GENERATOR_DEFAULTS, **PRIOR_SETTINGS})
    gray = gray_coded_map(masks_from_records(generator.generate(image), image.shape[:2]), shape=image.shape[:2])
    assert len(np.unique(gray)) > 1
    np.testing.assert_array_equal(iio.imread(tmp_path / "p0.gray.png"), gray)
    predictor.set_image(image)
    with np.load(tmp_path / "p0.features.npz") as features:
        np.testing.assert_array_equal(features["embedding"], predictor.features[0].numpy())
        np.testing.assert_array_equal(features["early_feature"], predictor.early_features[0].numpy())


def test_set_image_of_a_batch_image_takes_its_encoding(micro2_checkpoint, image, monkeypatch) -> None:
    predictor = open_predictor(micro2_checkpoint)
    predictor.set_image(image)
    expected = predictor.predict(box=BOX, multimask_output=False)
    calls = []
    encode = predictor.model.encode_images

    def counted(inputs):
        calls.append(len(inputs))
        return encode(inputs)

    monkeypatch.setattr(predictor.model, "encode_images", counted)
    flipped = np.ascontiguousarray(image[:, ::-1])
    predictor.set_image_batch([image, flipped])
    predictor.set_image(flipped)
    assert calls == [2]
    assert predictor.original_size == image.shape[:2] and not predictor._is_batch
    predictor.set_image_batch([image])
    predictor.set_image(image)
    assert calls == [2, 1]
    for got, want in zip(predictor.predict(box=BOX, multimask_output=False), expected):
        np.testing.assert_array_equal(got, want)

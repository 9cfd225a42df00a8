"""`robustsam track` on SAM 2's video predictor with a micro SAM 2 (synthetic weights): two objects
through a short clip (a mask prompt on a later frame, so SAM 2 propagates both ways), every frame
written, resumed runs byte-identical, bad prompts refused before any output, and memory held to
what SAM 2 can attend to."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from core.io import read_pixels, write_mask
from core.video import write_video
from core.video.metrics import region_similarity
from core.video.tracking import LazyFrames, _forget, memory_reach
from robustsam_cli.main import cli

pytest.importorskip("sam2")
pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (48, 64)
FRAMES = 4
MICRO = "sam2.1_hiera_micro"


def frame(index: int) -> np.ndarray:
    """A dark frame with a white square moving right and a grey disc moving down."""
    height, width = SIZE
    image = np.full((height, width, 3), 20, dtype=np.uint8)
    image[8:20, 4 + 3 * index : 16 + 3 * index] = 255
    yy, xx = np.mgrid[:height, :width]
    image[(yy - 20 - 2 * index) ** 2 + (xx - 46) ** 2 <= 36] = 150
    return image


def disc(index: int) -> np.ndarray:
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    return (yy - 20 - 2 * index) ** 2 + (xx - 46) ** 2 <= 36


@pytest.fixture(scope="module")
def micro_sam2(tmp_path_factory):
    from sam2.build_sam import build_sam2_video_predictor

    from core.sam2 import get_sam2_config

    config = get_sam2_config(MICRO)
    torch.manual_seed(0)
    model = build_sam2_video_predictor(config.config_file, None, device="cpu", hydra_overrides_extra=list(config.overrides))
    path = tmp_path_factory.mktemp("sam2") / "micro_sam2.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture()
def clip(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "clip.mp4", [frame(i) for i in range(FRAMES)], fps=10)
    write_mask(tmp_path / "disc2.png", disc(2))
    prompts = {"clip.mp4": [{"frame": 1, "obj_id": 1, "box": [7, 8, 19, 20]}, {"frame": 2, "obj_id": 2, "mask": "disc2.png"}]}
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    return folder


def _track(tmp_path, micro_sam2, *extra):
    args = ["track", str(tmp_path / "videos"), "--prompts", str(tmp_path / "prompts.json"), "-o", str(tmp_path / "out"),
            "--checkpoint", str(micro_sam2), "--model-type", MICRO, "--format", "label", "--device", "cpu", *extra]
    return CliRunner().invoke(cli, args)


def test_track_two_objects_writes_every_frame_and_resumes(tmp_path, clip, micro_sam2):
    result = _track(tmp_path, micro_sam2, "--overlay", "mp4")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    files = sorted((out / "clip").glob("*.png"))
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(FRAMES)]
    labels = read_pixels(files[2])
    assert labels.dtype == np.uint16 and labels.shape == SIZE
    # the mask prompt's frame: SAM 2 takes the given mask as that frame's output
    assert region_similarity(disc(2), labels == 2) > 0.8
    assert (out / "clip_overlay.mp4").is_file()
    written = {f.name: f.read_bytes() for f in files}
    files[1].unlink()
    files[3].unlink()
    result = _track(tmp_path, micro_sam2, "--overlay", "mp4")
    assert result.exit_code == 0, result.output
    assert {f.name: f.read_bytes() for f in sorted((out / "clip").glob("*.png"))} == written
    result = _track(tmp_path, micro_sam2, "--overlay", "mp4")  # all there: nothing tracked again
    assert result.exit_code == 0 and "│ clip  │      4 │       0 │    4 │     0.0 │" in result.output


@pytest.mark.parametrize(
    "prompts, message",
    [
        ({"clip.mp4": [{"frame": 4, "obj_id": 1, "box": [4, 8, 16, 20]}]}, "frame 4 is past the end (4 frames)"),
        ({"clip.mp4": [{"frame": 0, "obj_id": 1}]}, "object 1 has no prompt"),
        ({"clip.mp4": [{"frame": 0, "obj_id": 1, "box": [4, 8, 16, 20]}], "other.mp4": [{"frame": 0, "obj_id": 1, "box": [1, 1, 4, 4]}]},
         "prompts for 'other.mp4', which"),
    ],
)
def test_track_refuses_bad_prompts_before_any_output(tmp_path, clip, micro_sam2, prompts, message):
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    result = _track(tmp_path, micro_sam2)
    assert result.exit_code == 2 and message in result.output and "prompts.json" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_memory_kept_is_what_sam2_can_attend_to():
    predictor = type("Predictor", (), {"num_maskmem": 7, "memory_temporal_stride_for_eval": 1,
                                       "max_obj_ptrs_in_encoder": 16, "use_obj_ptrs_in_encoder": True})()
    reach = memory_reach(predictor)
    assert reach == 16
    stored = {t: object() for t in range(60)}
    state = {"output_dict_per_obj": {0: {"non_cond_frame_outputs": stored}}}
    _forget(state, frame=50, reach=reach, keep_after=3, reverse=False)
    # forward: the last `reach` frames stay, and those the backward pass from frame 3 will read
    assert sorted(stored) == list(range(3, 3 + reach + 1)) + list(range(50 - reach, 60))
    _forget(state, frame=2, reach=reach, keep_after=3, reverse=True)
    assert max(stored) == 2 + reach


def test_lazy_frames_decode_on_demand_as_sam2_normalises(tmp_path):
    class Frames:
        def __init__(self):
            self.read = []

        def __len__(self):
            return 3

        def __getitem__(self, index):
            self.read.append(index)
            return frame(index)

    source = Frames()
    frames = LazyFrames(source, 32)
    assert len(frames) == 3 and source.read == []
    pixels = frames[1]
    assert source.read == [1] and pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    # black (20/255) normalised with ImageNet statistics
    assert pixels[0, -1, 0].item() == pytest.approx((20 / 255 - 0.485) / 0.229, abs=1e-4)


def test_eval_video_scores_each_condition_of_davis_and_degraded_layouts(tmp_path, micro_sam2):
    from core.io import write_image
    from core.video.evaluation import first_frame_prompts, video_conditions

    davis = tmp_path / "davis"
    for index in range(3):
        write_image(davis / "JPEGImages" / "480p" / "seq" / f"{index:05d}.jpg", frame(index))
        write_image(davis / "Annotations" / "480p" / "seq" / f"{index:05d}.png", disc(index).astype(np.uint8) * 2)
    annotations, conditions = video_conditions(davis)
    assert annotations == davis / "Annotations" / "480p" and list(conditions) == ["clear"]
    (prompt,) = first_frame_prompts(disc(0).astype(np.uint8) * 2, "box", "a.png")
    assert prompt.obj_id == 2 and prompt.prompt.box == (40.0, 14.0, 53.0, 27.0)
    degraded = tmp_path / "degraded"
    result = CliRunner().invoke(cli, ["degrade", str(davis / "JPEGImages" / "480p"), "-o", str(degraded), "--types", "fog",
                                      "--masks", str(davis / "Annotations" / "480p")])
    assert result.exit_code == 0, result.output
    assert list(video_conditions(degraded)[1]) == ["clear", "fog"]
    result = CliRunner().invoke(cli, ["eval", "--video", "--data", str(degraded), "--model", f"sam2={micro_sam2}",
                                      "--out", str(tmp_path / "report"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "report" / "video_results.json").read_text())
    assert list(document["results"]["sam2"]) == ["clear", "fog"]
    assert all(0.0 <= scores["J&F"] <= 1.0 for scores in document["results"]["sam2"].values())
    result = CliRunner().invoke(cli, ["eval", "--video", "--data", str(tmp_path), "--model", f"sam2={micro_sam2}",
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 2 and "neither DAVIS" in result.output

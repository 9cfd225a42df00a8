"""core.video: frame sources (an MP4 the test writes, frame folders), video prompt files, the
per-frame writers and the DAVIS measures against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.io import read_pixels, write_image, write_mask
from core.errors import InputError
from core.io import encode_rle
from core.video import (
    FrameFolder,
    SequenceScores,
    VideoFile,
    VideoInfo,
    boundary_accuracy,
    boundary_map,
    find_sources,
    load_video_prompts,
    make_video_writers,
    open_source,
    region_similarity,
    write_video,
)

SIZE = (48, 64)


def moving_square(index: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A frame with a bright square moving right by 2 px per frame on a gradient."""
    height, width = size
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 2] = np.linspace(0, 200, width, dtype=np.uint8)[None]
    x = 4 + 2 * index
    frame[10:26, x : x + 16] = 255
    return frame


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, (moving_square(i) for i in range(20)), fps=12)
    return path


def test_mp4_written_by_the_test_decodes_with_its_count_rate_and_size(mp4):
    with open_source(mp4) as video:
        assert isinstance(video, VideoFile) and video.name == "clip.mp4"
        assert (video.info.num_frames, video.info.fps, video.info.size) == (20, 12.0, SIZE)
        frames = list(video)
    assert len(frames) == 20 and frames[0].shape == (*SIZE, 3) and frames[0].dtype == np.uint8
    for index in (0, 7, 19):  # lossy H.264, but the square is where it was drawn
        assert np.abs(frames[index].astype(int) - moving_square(index)).mean() < 6


def test_random_access_seeks_back_and_keeps_a_bounded_cache(mp4):
    with open_source(mp4) as video:
        in_order = list(video)
    with VideoFile(mp4, cache_frames=3) as video:
        for index in (15, 2, 19, 0, 9, 8, 7):  # backwards and forwards, past the cache
            np.testing.assert_array_equal(video[index], in_order[index])
            assert len(video._cache._frames) <= 3


def test_truncated_and_unreadable_videos_name_the_file(mp4, tmp_path):
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(mp4.read_bytes()[: mp4.stat().st_size * 2 // 3])  # the header lists 20 frames
    with pytest.raises(InputError, match=r"cut\.mp4: truncated video \(\d+ of the 20 frames its header lists\)"):
        open_source(truncated)
    garbage = tmp_path / "junk.webm"
    garbage.write_bytes(b"not a video" * 50)
    with pytest.raises(InputError, match=r"junk\.webm: not a readable video"):
        open_source(garbage)
    with pytest.raises(InputError, match=r"missing\.mp4: no such video file"):
        open_source(tmp_path / "missing.mp4")


def test_frame_folder_reads_in_order_and_refuses_gaps(tmp_path):
    folder = tmp_path / "bear"
    for index in range(3):
        write_image(folder / f"{index:05d}.jpg", moving_square(index))
    video = open_source(folder)
    assert isinstance(video, FrameFolder) and video.name == "bear"
    assert (video.info.num_frames, video.info.size) == (3, SIZE)
    assert np.abs(video[2].astype(int) - moving_square(2)).mean() < 6
    write_image(folder / "00004.jpg", moving_square(4))
    with pytest.raises(InputError, match=r"bear: gap in the frames: frame 3 missing \(after 00002.jpg\)"):
        FrameFolder(folder)


def test_find_sources_lists_videos_and_frame_folders(mp4, tmp_path):
    write_image(tmp_path / "seq" / "00000.png", moving_square(0))
    (tmp_path / "clip.mp4").write_bytes(mp4.read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_sources(tmp_path)] == ["clip.mp4", "seq"]
    assert find_sources(tmp_path / "seq") == [tmp_path / "seq"]


def _prompt_file(tmp_path, content) -> str:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(content))
    return path


def test_video_prompts_read_boxes_points_and_masks(mp4, tmp_path):
    mask = np.zeros(SIZE, dtype=bool)
    mask[10:26, 4:20] = True
    write_mask(tmp_path / "square.png", mask)
    rle = encode_rle(mask[None])[0]
    path = _prompt_file(tmp_path, {"clip.mp4": [
        {"frame": 0, "obj_id": 1, "box": [4, 10, 20, 26]},
        {"frame": 5, "obj_id": 1, "points": [[20, 18]], "labels": [1]},
        {"frame": 0, "obj_id": 2, "mask": "square.png"},
        {"frame": 3, "obj_id": 3, "mask": rle},
    ]})
    with open_source(mp4) as video:
        prompts = load_video_prompts(path).for_video(video)
    assert [(p.frame, p.obj_id) for p in prompts] == [(0, 1), (5, 1), (0, 2), (3, 3)]
    assert prompts[0].prompt.box == (4.0, 10.0, 20.0, 26.0) and prompts[1].prompt.labels == (1,)
    np.testing.assert_array_equal(prompts[2].mask, mask)
    np.testing.assert_array_equal(prompts[3].mask, mask)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"frame": 20, "obj_id": 1, "box": [1, 1, 5, 5]}, r"field 'frame': frame 20 is past the end \(20 frames\)"),
        ({"frame": 0, "obj_id": 2}, r": object 2 has no prompt"),
        ({"frame": 0, "obj_id": -1, "box": [1, 1, 5, 5]}, r"field 'obj_id': expected a non-negative integer"),
        ({"frame": 0, "obj_id": 1, "box": [1, 1, 99, 5]}, r"field 'box': \[1.0, 1.0, 99.0, 5.0\] is outside the 64x48 image"),
        ({"frame": 0, "obj_id": 1, "mask": {"size": [4, 4], "counts": "04"}}, r"field 'mask'"),
    ],
)
def test_bad_video_prompts_name_file_video_and_field(mp4, tmp_path, entry, message):
    path = _prompt_file(tmp_path, {"clip.mp4": [entry]})
    with pytest.raises(InputError, match=rf"prompts.json: video 'clip.mp4', prompt 0.*{message}"):
        with open_source(mp4) as video:
            load_video_prompts(path).for_video(video)


def test_region_similarity_and_boundary_accuracy_hand_computed():
    gt = np.zeros((10, 10), dtype=bool)
    gt[2:6, 2:6] = True
    shifted = np.roll(gt, 2, axis=1)
    # 16 boundary pixels: the 4x4 square's right column and bottom row inside (7), the row above
    # and the column left of it outside (9); DAVIS's boundary sits half a pixel towards the origin.
    assert boundary_map(gt).sum() == 16
    assert region_similarity(gt, shifted) == pytest.approx(8 / 24)  # 8 shared of 24 pixels
    # Tolerance ceil(0.008 * 14.1) = 1 px: 10 of the 16 boundary pixels on each side lie within
    # one pixel (4-neighbourhood) of the other boundary, so precision = recall = F = 10 / 16.
    assert boundary_accuracy(gt, shifted) == pytest.approx(10 / 16)
    assert boundary_accuracy(gt, np.roll(gt, 1, axis=1)) == 1.0  # within the tolerance
    empty = np.zeros_like(gt)
    assert (region_similarity(empty, empty), boundary_accuracy(empty, empty)) == (1.0, 1.0)
    assert (region_similarity(gt, empty), boundary_accuracy(gt, empty)) == (0.0, 0.0)
    void = ~gt & shifted  # the prediction's extra pixels are void: J counts only the rest
    assert region_similarity(gt, shifted, void) == pytest.approx(8 / 16)


def test_sequence_scores_skip_first_and_last_frame_and_average_objects():
    gt = np.zeros((10, 10), dtype=np.uint16)
    gt[2:6, 2:6] = 1
    gt[7:9, 7:9] = 2
    scores = SequenceScores(num_frames=4)
    right = {1: gt == 1, 2: gt == 2}
    scores.add(0, gt, {}, [1, 2])  # first frame: not scored
    scores.add(1, gt, right, [1, 2])
    scores.add(2, gt, {1: gt == 1}, [1, 2])  # object 2 lost: J = F = 0
    scores.add(3, gt, {}, [1, 2])  # last frame: not scored
    means = scores.means()
    assert means == {"J": 0.75, "F": 0.75, "J&F": 0.75}


@pytest.mark.parametrize("output_format", ["png", "label", "coco"])
def test_writers_write_each_frame_and_resume(tmp_path, output_format):
    info = VideoInfo(3, 10.0, SIZE)
    masks = {1: np.zeros(SIZE, dtype=bool), 2: np.zeros(SIZE, dtype=bool)}
    masks[1][:10, :10] = True
    masks[2][20:, 30:] = True
    writers = make_video_writers(tmp_path, "clip", info, [1, 2], output_format, "mp4")
    for frame in range(3):
        assert not any(w.frame_done(frame) for w in writers)
        for writer in writers:
            writer.write(frame, moving_square(frame), masks)
        assert all(w.frame_done(frame) for w in writers)
    for writer in writers:
        writer.finish()
    assert open_source(tmp_path / "clip_overlay.mp4").info.num_frames == 3
    assert not (tmp_path / "clip" / "overlay").exists()
    if output_format == "png":
        assert sorted(p.name for p in (tmp_path / "clip" / "2").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    elif output_format == "label":
        labels = read_pixels(tmp_path / "clip" / "00001.png")
        assert labels.dtype == np.uint16 and set(np.unique(labels)) == {0, 1, 2}
    else:
        document = json.loads((tmp_path / "clip.json").read_text())
        assert [(a["frame"], a["obj_id"]) for a in document["annotations"]] == [(f, o) for f in range(3) for o in (1, 2)]
        assert not (tmp_path / "clip" / ".rle").exists()
    assert all(w.frame_done(2) for w in writers)  # finished outputs count as done on a rerun


def test_shards_split_the_videos_of_a_folder(mp4, tmp_path):
    from core.parallel import Shard
    from core.video import plan_track

    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / "clips").mkdir(exist_ok=True)
        (tmp_path / "clips" / name).write_bytes(mp4.read_bytes())
    prompts = {name: [{"frame": 0, "obj_id": 1, "box": [4, 10, 20, 26]}] for name in ("a.mp4", "b.mp4", "c.mp4")}
    path = _prompt_file(tmp_path, prompts)
    parts = [[job.name for job in plan_track(tmp_path / "clips", path, tmp_path / "out", shard=Shard(k, 2)).jobs] for k in (0, 1)]
    assert sorted(parts[0] + parts[1]) == ["a", "b", "c"] and parts[0] and parts[1]
    assert [job.name for job in plan_track(tmp_path / "clips", path, tmp_path / "out").jobs] == ["a", "b", "c"]

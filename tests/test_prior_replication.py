"""scripts/prior_replication.py at a tiny size, and the classical baselines of priors.classical."""

import importlib.util
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from priors import psnr
from priors.classical import dark_channel, dark_channel_dehaze, richardson_lucy_deblur, wiener_deblur

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prior_replication.py"
ROW_LABELS = ("degraded input (floor)", "dark channel prior", "Wiener, true kernel", "Richardson-Lucy, true kernel",
              "no prior", "SAM prior", "RobustSAM prior")


def _load_script():
    spec = importlib.util.spec_from_file_location("prior_replication", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, script):
    """The script at a tiny size: 4 training and 3 held-out 48 px scenes, 3 steps, width-8 networks."""
    out = tmp_path_factory.mktemp("prior_replication")
    argv = ["prior_replication.py", "--train-count", "4", "--test-count", "3", "--size", "48", "--crop", "32",
            "--steps", "3", "--batch", "2", "--width", "8", "--points-per-side", "6", "--sheet-count", "2",
            "--work", str(out / "work"), "--report", str(out / "docs" / "prior_replication.md")]
    saved = sys.argv
    sys.argv = argv
    try:
        script.main()
    finally:
        sys.argv = saved
    return out


def test_every_arm_trained_and_scored(tiny_run):
    results = json.loads((tiny_run / "work" / "results.json").read_text())
    assert set(results["tasks"]) == {"dehaze", "deblur"}
    for task, expected in (("dehaze", {"dark channel prior"}), ("deblur", {"Wiener, true kernel", "Richardson-Lucy, true kernel"})):
        rows, train = results["tasks"][task]["rows"], results["tasks"][task]["train"]
        assert set(rows) == {"input", "none", "sam", "robust"} | expected
        for scores in rows.values():
            assert len(scores["psnr"]) == len(scores["ssim"]) == 3
            assert all(np.isfinite(scores["psnr"])) and all(0 < s <= 1 for s in scores["ssim"])
        assert {arm: t["steps"] for arm, t in train.items()} == {"none": 3, "sam": 3, "robust": 3}
    for arm in ("sam", "robust"):
        assert set(results["prior_cost"][arm]) == {"dehaze", "deblur"}
        assert all(c["mean_seconds"] > 0 for c in results["prior_cost"][arm].values())


def test_doc_has_every_row_and_links_its_sheets(tiny_run):
    doc = (tiny_run / "docs" / "prior_replication.md").read_text()
    for label in ROW_LABELS:
        assert f"| {label} |" in doc
    for difference in ("RobustSAM prior − SAM prior", "SAM prior − no prior", "RobustSAM prior − no prior"):
        assert doc.count(f"| {difference} |") == 2
    assert "python3 scripts/prior_replication.py --train-count 4" in doc
    for task in ("dehaze", "deblur"):
        assert f"](prior_sheet_{task}.png)" in doc
        picture = iio.imread(tiny_run / "docs" / f"prior_sheet_{task}.png")
        # Two held-out images, five columns (input, three arms, ground truth), 2 px gaps.
        assert picture.shape == (2 * 48 + 2, 5 * 48 + 4 * 2, 3)


def test_prior_arms_see_their_own_priors(tiny_run):
    """Break-it check: if an arm trained on another arm's priors (or none), its scores would coincide."""
    results = json.loads((tiny_run / "work" / "results.json").read_text())
    segments = {arm: results["prior_cost"][arm]["deblur"]["mean_segments"] for arm in ("sam", "robust")}
    assert segments["sam"] != segments["robust"]
    rows = results["tasks"]["deblur"]["rows"]
    assert rows["sam"]["psnr"] != rows["robust"]["psnr"]
    assert rows["sam"]["psnr"] != rows["none"]["psnr"]


def test_crop_larger_than_scene_is_refused(script, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["prior_replication.py", "--size", "32", "--crop", "64", "--work", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    assert exit_info.value.code == 2
    assert "--crop 64 is larger than --size 32" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_haze_follows_the_object_masks(script):
    rng = np.random.default_rng(0)
    clean = np.zeros((32, 32, 3), np.uint8)
    masks = np.zeros((1, 32, 32), bool)
    masks[0, 8:16, 8:16] = True
    hazy = script.add_haze(clean, masks, rng).astype(float)
    # A black scene shows A (1 - t): constant inside the object, and not the background's value.
    assert np.ptp(hazy[8:16, 8:16], axis=(0, 1)).max() == 0
    assert not np.allclose(hazy[8:16, 8:16].mean(), hazy[24:, 24:].mean(), atol=2)


def _colourful(seed: int, size: int = 64) -> np.ndarray:
    """Blocks of saturated colours with one channel near zero each: a scene the dark channel prior fits."""
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(0.3, 1.0, size=(size // 8, size // 8, 3))
    blocks[np.arange(size // 8)[:, None], np.arange(size // 8)[None], rng.integers(0, 3, (size // 8, size // 8))] = 0.02
    return np.rint(np.kron(blocks, np.ones((8, 8, 1))) * 255).astype(np.uint8)


def test_dark_channel_is_the_local_minimum_over_channels():
    image = torch.ones(1, 3, 9, 9)
    image[0, 1, 4, 4] = 0.2
    dark = dark_channel(image, patch=3)[0, 0]
    assert torch.allclose(dark[3:6, 3:6], torch.full((3, 3), 0.2))
    assert dark[0, 0] == 1 and dark[4, 7] == 1


def test_dark_channel_dehazing_removes_uniform_haze():
    clean = _colourful(0)
    transmission = np.full((64, 64, 1), 0.4)
    transmission[:8] = 0.0  # a strip of sky at infinity, where the hazy image is the airlight
    hazy = np.rint(clean * transmission + (1 - transmission) * 0.9 * 255).astype(np.uint8)
    restored = dark_channel_dehaze(hazy, patch=7, guide_radius=4)
    # Measured: hazy 9.4 dB, restored 30.7 dB (below the sky strip).
    assert psnr(restored[8:], clean[8:]) > psnr(hazy[8:], clean[8:]) + 10


def _blurred(clean: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    from core.degradations.kernels import correlate_per_sample, motion_kernels

    kernel = motion_kernels([length], torch.tensor([30.0]), torch.device("cpu")).double()
    image = torch.from_numpy(clean).permute(2, 0, 1)[None].double() / 255
    blurred = correlate_per_sample(image, kernel)[0].permute(1, 2, 0).numpy()
    return np.rint(blurred * 255).astype(np.uint8), kernel[0].numpy()


@pytest.mark.parametrize("deblur", [wiener_deblur, richardson_lucy_deblur])
def test_deconvolution_with_the_true_kernel_sharpens(deblur):
    clean = _colourful(1)
    blurred, kernel = _blurred(clean, 9)
    restored = deblur(blurred, kernel)
    assert restored.shape == clean.shape and restored.dtype == np.uint8
    # Measured: blurred 15.9 dB; Wiener 17.9 dB, Richardson-Lucy 20.1 dB.
    assert psnr(restored, clean) > psnr(blurred, clean) + 1.5


def test_deconvolution_refuses_a_kernel_of_even_size():
    with pytest.raises(ValueError, match="odd square"):
        wiener_deblur(np.zeros((16, 16, 3), np.uint8), np.ones((4, 4)))

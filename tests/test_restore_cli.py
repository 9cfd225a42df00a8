"""Paired data layouts and `robustsam restore train|eval|run` end to end on tiny networks."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from core.errors import InputError
from priors.data import find_pairs
from priors.metrics import psnr, ssim
from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_UNET = ["--width", "4", "--levels", "2", "--steps", "6", "--batch-size", "2", "--crop", "16", "--device", "cpu"]
TINY_NAFNET = ["--width", "4", "--enc-blocks", "1,1", "--dec-blocks", "1,1", "--steps", "6", "--batch-size", "2", "--crop", "16", "--device", "cpu"]


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array)


@pytest.fixture
def sots(tmp_path):
    """RESIDE SOTS layout: hazy/<id>_<A>_<beta>.png beside clear/<id>.png, plus gray priors."""
    rng = np.random.default_rng(0)
    root, priors = tmp_path / "sots", tmp_path / "priors"
    for index in range(3):
        clear = rng.integers(0, 256, size=(20, 18, 3), dtype=np.uint8)
        _write(root / "clear" / f"{index:04d}.png", clear)
        _write(root / "hazy" / f"{index:04d}_0.8_0.2.png", (clear * 0.6 + 90).astype(np.uint8))
        gray = np.zeros((20, 18), dtype=np.uint8)
        gray[:10] = 2
        _write(priors / "hazy" / f"{index:04d}_0.8_0.2.gray.png", gray)
    return root, priors


def test_find_pairs_sots_and_gopro_layouts(tmp_path, sots):
    root, _ = sots
    pairs = find_pairs(root, "dehaze")
    assert [(p.name, p.clean.name) for p in pairs] == [(f"hazy/{i:04d}_0.8_0.2.png", f"{i:04d}.png") for i in range(3)]
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    for scene in ("GOPR0384_11_00", "GOPR0410_11_00"):
        for folder in ("blur", "sharp"):
            _write(tmp_path / "gopro" / scene / folder / "000001.png", image)
    names = [p.name for p in find_pairs(tmp_path / "gopro", "deblur")]
    assert names == ["GOPR0384_11_00/blur/000001.png", "GOPR0410_11_00/blur/000001.png"]
    (tmp_path / "gopro" / "GOPR0410_11_00" / "sharp" / "000001.png").unlink()
    with pytest.raises(InputError, match="000001.png: no clean image"):
        find_pairs(tmp_path / "gopro", "deblur")
    with pytest.raises(InputError, match="no `hazy/` \\+ `clear/` image pairs"):
        find_pairs(tmp_path / "gopro", "dehaze")


def test_train_eval_run_with_stored_priors(tmp_path, sots):
    root, priors = sots
    runner = CliRunner()
    net = tmp_path / "net.pt"
    result = runner.invoke(cli, ["restore", "train", "--task", "dehaze", str(root), "-o", str(net), "--priors", str(priors), *TINY_UNET])
    assert result.exit_code == 0, result.output
    report = tmp_path / "report.json"
    result = runner.invoke(cli, ["restore", "eval", str(root), "--network", str(net), "--priors", str(priors), "-o", str(report)])
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())
    mean_line = next(line for line in result.output.splitlines() if line.startswith("mean over 3"))
    assert f"PSNR {rows['mean']['psnr']:.3f}" in mean_line
    result = runner.invoke(cli, ["restore", "run", str(root / "hazy"), "--network", str(net), "--priors", str(priors / "hazy"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for row in rows["images"]:
        stem = row["name"].split("/")[1][: -len(".png")]
        restored = iio.imread(tmp_path / "out" / f"{stem}.png")
        clear = iio.imread(root / "clear" / f"{stem[:4]}.png")
        hazy = iio.imread(root / row["name"])
        assert row["psnr"] == pytest.approx(psnr(restored, clear), abs=1e-9)
        assert row["ssim"] == pytest.approx(ssim(restored, clear), abs=1e-9)
        assert row["input_psnr"] == pytest.approx(psnr(hazy, clear), abs=1e-9)
    assert rows["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows["images"]]))
    result = runner.invoke(cli, ["restore", "run", str(root / "hazy"), "--network", str(net), "--priors", str(priors / "hazy"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0 and "0 restored, 3 already there" in result.output


def test_restore_errors(tmp_path, sots, monkeypatch):
    monkeypatch.setattr("robustsam_cli.defaults.default_checkpoint", lambda: None)
    root, priors = sots
    runner = CliRunner()
    net = tmp_path / "net.pt"
    result = runner.invoke(cli, ["restore", "train", "--task", "dehaze", str(root), "-o", str(net), *TINY_UNET])
    assert result.exit_code == 2 and "--priors" in result.output and not net.exists()
    (priors / "hazy" / "0001_0.8_0.2.gray.png").unlink()
    result = runner.invoke(cli, ["restore", "train", "--task", "dehaze", str(root), "-o", str(net), "--priors", str(priors), *TINY_UNET])
    assert result.exit_code == 2 and "0001_0.8_0.2.gray.png: no prior for hazy/0001_0.8_0.2.png" in result.output
    assert not net.exists()
    result = runner.invoke(cli, ["restore", "train", "--task", "dehaze", str(root), "-o", str(net), "--no-prior", *TINY_UNET])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["restore", "eval", str(root), "--network", str(net), "--task", "deblur"])
    assert result.exit_code == 2 and "net.pt: a dehaze network, not deblur" in result.output
    (tmp_path / "bad.pt").write_bytes(b"junk")
    result = runner.invoke(cli, ["restore", "run", str(root / "hazy"), "--network", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "bad.pt: not a readable network file" in result.output


def test_deblur_with_priors_computed_on_the_fly_equals_stored(tmp_path, micro_checkpoint):
    rng = np.random.default_rng(1)
    root = tmp_path / "gopro" / "scene"
    for index in range(2):
        sharp = rng.integers(0, 60, size=(24, 28, 3), dtype=np.uint8)
        sharp[6:18, 4:20] += 150
        _write(root / "sharp" / f"{index:06d}.png", sharp)
        _write(root / "blur" / f"{index:06d}.png", ((sharp.astype(np.uint16) + np.roll(sharp, 2, axis=1)) // 2).astype(np.uint8))
    segmenter = ["--checkpoint", str(micro_checkpoint), "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    runner = CliRunner()
    result = runner.invoke(cli, ["prior", "--task", "deblur", str(tmp_path / "gopro"), "--glob", "*/blur/*", "-o", str(tmp_path / "priors"), *segmenter])
    assert result.exit_code == 0, result.output
    assert len(np.unique(iio.imread(tmp_path / "priors" / "scene" / "blur" / "000000.gray.png"))) > 1
    net = tmp_path / "net.pt"
    result = runner.invoke(cli, ["restore", "train", "--task", "deblur", str(tmp_path / "gopro"), "-o", str(net), "--priors", str(tmp_path / "priors"), *TINY_NAFNET])
    assert result.exit_code == 0, result.output
    stored = runner.invoke(cli, ["restore", "eval", str(tmp_path / "gopro"), "--network", str(net), "--priors", str(tmp_path / "priors")])
    computed = runner.invoke(cli, ["restore", "eval", str(tmp_path / "gopro"), "--network", str(net), *segmenter])
    assert stored.exit_code == 0 and computed.exit_code == 0, stored.output + computed.output
    scores = [line for line in stored.output.splitlines() if "PSNR" in line]
    assert len(scores) == 3 and scores == [line for line in computed.output.splitlines() if "PSNR" in line]

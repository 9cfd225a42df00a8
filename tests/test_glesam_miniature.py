"""scripts/glesam_miniature.py at a tiny size: both GleSAM stages train (and the decoder-only control), and
SAM, RobustSAM, the control and GleSAM are each scored on clear and LQ-1..3 with both prompts, the three
methods timed, into the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import glesam_miniature  # noqa: E402
from core.glesam import load_glesam  # noqa: E402
from core.model import build_robustsam  # noqa: E402
from core.model.default_model import DEFAULT_CHECKPOINT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_every_arm_is_trained_and_scored(tmp_path: Path) -> None:
    work, report = tmp_path / "work", tmp_path / "glesam.md"
    # 6 iterations: the released objective's generator first moves at iteration 5
    glesam_miniature.main(["--unet-steps", "6", "--decoder-steps", "2", "--batch-size", "2", "--count", "1",
                           "--timing-repeats", "1", "--work", str(work), "--report", str(report)])
    for prefix in ("", "glesam-mse-"):
        for stage, steps in (("unet", 6), ("decoder", 2)):
            logs = [json.loads(line) for line in (work / f"{prefix}{stage}" / "log.jsonl").read_text().splitlines()]
            assert logs[-1]["step"] == steps and logs[-1]["stage"] == stage
        enhanced = load_glesam(work / f"{prefix}decoder" / "final.pth")
        assert enhanced.enhancer.unet.conv_out.base_layer.weight.abs().sum() > 0, f"{prefix}unet left the U-Net's output at its zero start"
    first = {folder: json.loads((work / folder / "log.jsonl").read_text().splitlines()[0]) for folder in ("unet", "glesam-mse-unet")}
    assert "dm" in first["unet"] and "dm" not in first["glesam-mse-unet"]
    glesam, sam = load_glesam(work / "decoder" / "final.pth"), build_robustsam(None, DEFAULT_CHECKPOINT)
    assert not torch.equal(glesam.sam.mask_decoder.output_upscaling[0].weight, sam.mask_decoder.output_upscaling[0].weight), \
        "stage decoder left SAM's decoder as it was"

    evaluations = sorted(work.glob("eval-*/results.json"))
    assert len(evaluations) == 4  # two scene sets x (points, box)
    for path in evaluations:
        rows = {row["label"]: row["values"] for row in json.loads(path.read_text())["tables"][0]["rows"]}
        for condition in ("Clear", "LQ-1", "LQ-2", "LQ-3", "Degrade"):
            assert set(rows[condition]) == set(glesam_miniature.MODELS)
            assert all(0 <= rows[condition][model]["iou"] <= 1 for model in glesam_miniature.MODELS)
    text = report.read_text()
    summary = text.split("## Summary")[1].split("## Cost per image")[0]
    costs = text.split("## Cost per image")[1].split("## Commands")[0]
    for model in glesam_miniature.MODELS:
        assert sum(f"| {model} |" in line for line in summary.splitlines()) == 4, model
    for model in glesam_miniature.TIMED:
        assert sum(line.startswith(f"| {model} |") for line in costs.splitlines()) == 1, model
    control = load_glesam(work / "no-enhancer-decoder" / "final.pth")
    assert control.enhancer.unet.conv_out.base_layer.weight.abs().sum() == 0, "the control's enhancer trained"

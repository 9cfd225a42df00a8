"""benchmarks/gpu_suite.py: its CPU dry run end to end, and its budget and out-of-memory handling."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402

ABSENT_REASONS = ("budget spent", "out of memory")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu-suite")
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--out", str(out), "--device", "cpu", "--quick"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads((out / "gpu_suite.json").read_text()), (out / "gpu_suite.md").read_text()


def rows_of(report: dict, **key) -> list[dict]:
    return [row for row in report["rows"] if all(row.get(k) == v for k, v in key.items())]


@pytest.mark.slow
def test_dry_run_measures_every_kind_of_row(dry_run) -> None:
    report, _ = dry_run
    for row in report["rows"]:
        assert row["status"] == "measured" or row["reason"] in ABSENT_REASONS, row
    (tests,) = rows_of(report, kind="cuda tests")
    assert tests["skipped"] >= 1 and tests["passed"] == tests["failed"] == 0  # no CUDA here: all skipped
    (agreement,) = rows_of(report, kind="cuda vs cpu")
    assert agreement["all_within"] and len(agreement["checks"]) == 6
    for precision in gpu_suite.QUICK.precisions:
        for path in gpu_suite.PATHS:
            (row,) = rows_of(report, kind="set_image", model="vit_micro", path=path, precision=precision, batch=1, compiled=False)
            assert row["status"] == "measured" and row["images_per_s"] > 0 and row["prompts_per_s"] > 0
    for path in gpu_suite.PATHS:
        batches = [row for row in rows_of(report, kind="set_image", path=path, status="measured") if row["batch"] > 1]
        assert batches and sum(bool(row.get("best_batch")) for row in batches) == 1
        ours = "set_image_batch" if hasattr(gpu_suite.RobustPredictor, "set_image_batch") else "stacked encode"
        assert {row["how"] for row in batches} == {"stacked encode" if path == "segment_anything" else ours}
    compiled = rows_of(report, kind="set_image", compiled="eager", status="measured")
    assert {row["path"] for row in compiled} == {"robust", "sam"}
    (segment,) = rows_of(report, kind="segment", status="measured")
    assert segment["masks_written"] == 2 * segment["images"] and segment["images_per_s"] > 0
    (glesam,) = rows_of(report, kind="glesam", status="measured")
    assert glesam["time_vs_sam"] > 1  # the enhancer step costs something
    for path in gpu_suite.SAM2_PATHS:  # SAM 2: ours on both paths and sam2's own predictor
        (row,) = rows_of(report, model="sam2.1_hiera_t", path=path)
        assert row["status"] == "measured" and row["images_per_s"] > 0 and row["prompts_per_s"] > 0, row
    anchor = report["anchor"]
    assert anchor["speedup"] == pytest.approx(anchor["robust_images_per_s"] / gpu_suite.PAPER_ROBUST_FPS)
    assert anchor["time_ratio_vs_our_sam_path"] > 0 and anchor["time_ratio_vs_segment_anything"] > 0


@pytest.mark.slow
def test_dry_run_table_has_a_line_per_row(dry_run) -> None:
    report, table = dry_run
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(report["rows"])  # the header and one line per row
    assert "Paper anchor, vit_micro robust path, bf16, batch 1" in table
    assert "Robust/SAM time ratio against segment_anything" in table


def test_spent_budget_still_writes_every_row_as_absent(tmp_path) -> None:
    assert gpu_suite.main(["--out", str(tmp_path), "--device", "cpu", "--quick", "--budget-s", "0"]) == 0
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    reasons = {row["reason"] for row in report["rows"]}
    assert reasons == {"budget spent"}
    assert "absent" in report["anchor"]
    assert "Paper anchor: absent" in (tmp_path / "gpu_suite.md").read_text()


def test_out_of_memory_and_errors_are_rows_and_the_run_goes_on() -> None:
    rows: list[dict] = []
    budget, cpu = gpu_suite.Budget(60), torch.device("cpu")

    def out_of_memory() -> dict:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken() -> dict:
        raise ValueError("shapes differ\nsecond line")

    gpu_suite.run_row(rows, budget, cpu, {"kind": "a"}, out_of_memory)
    gpu_suite.run_row(rows, budget, cpu, {"kind": "b"}, broken)
    gpu_suite.run_row(rows, budget, cpu, {"kind": "c"}, lambda: {"images_per_s": 2.0})
    gpu_suite.run_row(rows, budget, cpu, {"kind": "d"}, lambda: {"images_per_s": 2.0}, reserve_s=120)
    assert [row["status"] for row in rows] == ["absent", "absent", "measured", "absent"]
    assert rows[0]["reason"] == "out of memory"
    assert rows[1]["reason"] == "error: ValueError: shapes differ"
    assert rows[3]["reason"] == "under 120 s of budget left"


def test_batch_search_stops_at_no_gain_or_out_of_memory() -> None:
    plan, cpu = dataclasses.replace(gpu_suite.QUICK, max_batch=64), torch.device("cpu")

    def measure(speeds: dict[int, float]):
        def images_per_s(batch: int) -> dict:
            if batch not in speeds:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return {"images_per_s": speeds[batch]}
        return images_per_s

    for speeds, batches, best in (({2: 10.0, 4: 20.0, 8: 20.5, 16: 40.0}, [2, 4, 8], 8),  # 8 gains < 5%: stop
                                  ({2: 10.0, 4: 20.0}, [2, 4, 8], 4)):  # 8 runs out of memory
        rows: list[dict] = []
        gpu_suite.best_batch_rows(rows, gpu_suite.Budget(60), cpu, {"kind": "set_image"}, measure(speeds), plan)
        assert [row["batch"] for row in rows] == batches
        assert [row["batch"] for row in rows if row.get("best_batch")] == [best]


def test_sections_run_only_the_named_rows(tmp_path, capsys) -> None:
    assert gpu_suite.main(["--out", str(tmp_path), "--device", "cpu", "--quick", "--budget-s", "0", "--sections", "sam2,tests"]) == 0
    kinds = {(row["kind"], row["model"]) for row in json.loads((tmp_path / "gpu_suite.json").read_text())["rows"]}
    assert kinds == {("cuda tests", None), ("set_image", "sam2.1_hiera_t")}
    assert gpu_suite.main(["--out", str(tmp_path / "bad"), "--device", "cpu", "--sections", "sam3"]) == 2
    assert "--sections sam3" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

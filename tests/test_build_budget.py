"""scripts/build_default_model.py --budget-min: the schedule that fits the budget, the rule that keeps or
replaces the shipped model, and the train command accepting the schedule's arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import build_default_model as build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def scores(robust: float) -> dict[str, dict[str, float]]:
    path = {"robust/degraded": robust, "robust/clear": robust + 0.1, "sam/degraded": 0.9, "sam/clear": 0.9}
    return {"photos/box": dict(path), "organic/points": dict(path)}


def test_with_option_replaces_or_appends() -> None:
    assert build.with_option(["--lr", "1", "--seed", "0"], "--lr", 2) == ["--lr", "2", "--seed", "0"]
    assert build.with_option(["--lr", "1"], "--device", "cuda") == ["--lr", "1", "--device", "cuda"]


def test_budget_stage_trains_the_steps_with_the_lr_drop_at_three_quarters() -> None:
    arguments = build.budget_stage(build.STAGE_A, 2000, "cuda")
    value = {flag: arguments[arguments.index(flag) + 1] for flag in ("--batch-size", "--epochs", "--lr-step", "--max-steps", "--device")}
    assert value == {"--batch-size": "64", "--epochs": "32", "--lr-step": "24", "--max-steps": "2000", "--device": "cuda"}
    assert arguments.count("--epochs") == 1 and arguments[:4] == build.STAGE_A[:4]


def test_steps_fill_the_training_time_given_the_probes() -> None:
    # probes: 20 steps of each stage in 4 s and 6 s -> 0.5 s per step of both stages
    assert build.steps_in_budget(300.0, 4.0, 6.0) == 600
    assert build.steps_in_budget(-5.0, 4.0, 6.0) == build.PROBE_STEPS  # probes overran: the minimum


def test_candidate_replaces_only_when_better_and_small() -> None:
    small = 5 * 2**20
    assert build.replaces(scores(0.5), scores(0.6), small)[0]
    assert not build.replaces(scores(0.5), scores(0.5), small)[0]
    assert not build.replaces(scores(0.6), scores(0.5), small)[0]
    keep, reason = build.replaces(scores(0.5), scores(0.9), 41 * 2**20)
    assert not keep and "41.0 MB, over 40 MB" in reason
    assert build.held_out_score(scores(0.5)) == pytest.approx(0.55)  # robust path only, degraded and clear


def test_train_accepts_the_budget_schedule(tmp_path) -> None:
    stage = build.with_option(build.budget_stage(build.STAGE_A, 1, "cpu"), "--batch-size", 2)
    stage = build.with_option(build.with_option(stage, "--val-count", 2), "--data", "photos:4")
    build.run(["train", *stage, "-o", str(tmp_path), "--no-progress"])
    assert (tmp_path / "final.pth").is_file()

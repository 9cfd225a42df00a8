"""More than one process (core.parallel): `segment` on 1 process, `--gpus 2` (torchrun, gloo) and
`--shard 0/2` + `--shard 1/2` writes the same files; a crashed worker fails the command; resume."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from core import build_robustsam
from core.errors import InputError
from core.parallel import assign_shards, parse_shard
from robustsam_cli.main import cli

PROMPTS = {
    "a.png": [{"box": [4, 6, 40, 30]}, {"points": [[50, 20]], "labels": [1]}, {"box": [30, 10, 70, 50]}],
    "b.png": [{"box": [0, 0, 80, 60]}, {"box": [10, 10, 30, 30]}],
    "c.png": [{"points": [[10, 10], [40, 30]], "labels": [1, 1]}],
}
FORMATS = [["--format", "png", "--overlay"], ["--format", "coco"], ["--format", "label"]]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scale")
    torch.manual_seed(0)
    torch.save(build_robustsam("vit_micro").state_dict(), root / "micro.pth")
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for name in PROMPTS:
        image = rng.integers(0, 80, (60, 80, 3), dtype=np.uint8)
        image[10:30, 15:35] = 230
        iio.imwrite(root / "imgs" / name, image)
    (root / "prompts.json").write_text(json.dumps(PROMPTS), encoding="utf-8")
    return {"root": root, "checkpoint": root / "micro.pth", "images": root / "imgs", "prompts": root / "prompts.json"}


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def segment(job: dict[str, Path], output: Path, *args: str) -> Result:
    command = ["segment", str(job["images"]), "--prompts", str(job["prompts"]), "-o", str(output),
               "--checkpoint", str(job["checkpoint"]), "--model-type", "vit_micro", *args]
    return CliRunner().invoke(cli, command, catch_exceptions=False)


def outputs(folder: Path) -> dict[str, bytes]:
    """Every result file, leaving out the resume state in dot-folders (.coco_parts, .parallel)."""
    files = (path for path in sorted(folder.rglob("*")) if path.is_file())
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files
            if not any(part.startswith(".") for part in path.relative_to(folder).parts)}


def test_shards_are_balanced_by_work_and_deterministic() -> None:
    assert assign_shards([1, 6, 3, 2], 2) == [1, 0, 1, 1]
    assert assign_shards([5, 5, 5, 5], 2) == [0, 1, 0, 1]
    assert parse_shard("1/2").index == 1
    with pytest.raises(InputError):
        parse_shard("2/2")


@pytest.mark.parametrize("options", FORMATS, ids=lambda options: options[1])
def test_segment_outputs_do_not_depend_on_the_split(job, options: list[str]) -> None:
    root = job["root"] / options[1]
    single = segment(job, root / "one", *options)
    assert single.exit_code == 0, single.output
    first = segment(job, root / "shards", *options, "--shard", "0/2")
    assert first.exit_code == 0, first.output
    if options[1] == "coco":
        assert not (root / "shards" / "coco_results.json").exists()  # never a partial merge
    second = segment(job, root / "shards", *options, "--shard", "1/2")
    assert second.exit_code == 0, second.output
    launched = segment(job, root / "gpus", *options, "--gpus", "2", "--master-port", free_port())
    assert launched.exit_code == 0, launched.output
    assert "6" in launched.output  # the summary counts the prompts of both workers
    expected = outputs(root / "one")
    assert expected
    assert outputs(root / "shards") == expected
    assert outputs(root / "gpus") == expected


def test_a_crashed_worker_fails_the_command_and_a_rerun_does_only_the_missing_work(job) -> None:
    output = job["root"] / "crash"
    output.mkdir()
    (output / "c").write_text("in the way", encoding="utf-8")  # rank 1 owns b and c; c's folder cannot be made
    failed = segment(job, output, "--gpus", "2", "--master-port", free_port())
    assert failed.exit_code != 0
    assert "rank 1:" in failed.output and "c" in failed.output
    assert (output / "a" / "metadata.csv").is_file() and (output / "b" / "metadata.csv").is_file()
    (output / "c").unlink()
    resumed = segment(job, output, "--shard", "1/2")
    assert resumed.exit_code == 0, resumed.output
    assert "skipped" in resumed.output
    rows = [line for line in resumed.output.splitlines() if "│" in line and any(ch.isdigit() for ch in line)]
    assert rows and rows[-1].split("│")[1].strip() == "1"  # one image segmented: c
    reference = job["root"] / "reference"
    assert segment(job, reference, "--format", "png").exit_code == 0
    assert outputs(output) == outputs(reference)
    shutil.rmtree(reference)

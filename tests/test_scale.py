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
# png runs by default; the other formats take the same paths through the launcher (slow: CI runs them).
FORMATS = [["--format", "png", "--overlay"], pytest.param(["--format", "coco"], marks=pytest.mark.slow),
           pytest.param(["--format", "label"], marks=pytest.mark.slow)]


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


@pytest.mark.slow
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


def written(folder: Path) -> dict[str, object]:
    """`outputs`, with each .npz as its arrays (its zip entries carry the time they were written)."""
    files = outputs(folder)
    for name in [name for name in files if name.endswith(".npz")]:
        with np.load(folder / name) as archive:
            files[name] = {key: archive[key].tolist() for key in archive.files}
    return files


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, [*args], catch_exceptions=False)


@pytest.fixture(scope="module")
def eval_data(job) -> Path:
    """A Robust-Seg split: 4 images of 3 sizes with two objects each, clear and fogged."""
    split = job["root"] / "evaldata" / "MSRA10K"
    for folder in ("clear", "masks", "fog"):
        (split / folder).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for index, width in enumerate((64, 80, 64, 96)):
        image = rng.integers(0, 80, (48, width, 3), dtype=np.uint8)
        masks = np.zeros((2, 48, width), bool)
        masks[0, 5 : 20 + 4 * index, 6:30] = True
        masks[1, 25:44, width - 30 : width - 4] = True
        image[masks[0]], image[masks[1]] = (220, 40, 40), (40, 200, 90)
        iio.imwrite(split / "clear" / f"im{index}.png", image)
        iio.imwrite(split / "fog" / f"im{index}.png", (image // 2 + 100).astype(np.uint8))
        np.save(split / "masks" / f"im{index}.npy", masks)
    return split


def evaluate(job: dict[str, Path], data: Path, out: Path, *args: str) -> Result:
    checkpoint = job["checkpoint"]
    return run("eval", "--data", str(data), "--model", f"a={checkpoint}", "--model", f"s={checkpoint}:sam",
               "--prompt", "box", "--out", str(out), *args)


@pytest.mark.slow
def test_eval_results_do_not_depend_on_the_split_and_a_crashed_worker_merges_nothing(job, eval_data, one_thread) -> None:
    root = job["root"] / "eval"
    single = evaluate(job, eval_data, root / "one")
    assert single.exit_code == 0, single.output
    first = evaluate(job, eval_data, root / "shards", "--shard", "0/2")
    assert first.exit_code == 0, first.output
    assert "Shard 0/2" in first.output and not (root / "shards" / "results.json").exists()  # never a partial merge
    second = evaluate(job, eval_data, root / "shards", "--shard", "1/2")
    assert second.exit_code == 0, second.output

    # Rank 1 evaluates model a, then cannot open its cache of model s.
    gpus = root / "gpus"
    (gpus / "cache" / "parts" / "1-of-2" / "s.jsonl").mkdir(parents=True)
    failed = evaluate(job, eval_data, gpus, "--gpus", "2", "--master-port", free_port())
    assert failed.exit_code != 0
    assert "rank 1:" in failed.output and "s.jsonl" in failed.output
    assert not (gpus / "results.json").exists()
    (gpus / "cache" / "parts" / "1-of-2" / "s.jsonl").rmdir()
    resumed = evaluate(job, eval_data, gpus, "--gpus", "2", "--master-port", free_port())
    assert resumed.exit_code == 0, resumed.output
    # Each image was evaluated once per model over both runs: the rerun did only the missing work.
    records = [line for path in (gpus / "cache").rglob("*.jsonl") for line in path.read_text().splitlines()[1:]]
    assert len(records) == 8 * 2

    expected = json.loads((root / "one" / "results.json").read_text())
    assert [row["images"] for row in expected["tables"][0]["rows"]] == [4, 4, 4, 8]
    for folder in (root / "shards", gpus):
        assert json.loads((folder / "results.json").read_text()) == expected
        for name in ("results.md", "prompts.json"):
            assert (folder / name).read_bytes() == (root / "one" / name).read_bytes()


def test_an_unreadable_image_in_a_split_eval_fails_that_image_alone(job, eval_data, one_thread, tmp_path) -> None:
    """The shard that merges reports the image another shard could not read (exit 1) and writes
    the tables of the rest, as one process does; it never waits for that image's result."""
    data = tmp_path / "MSRA10K"
    shutil.copytree(eval_data, data)
    (data / "fog" / "im2.png").write_bytes(b"not a png")
    one = evaluate(job, data, tmp_path / "one", "--limit", "3")
    shards = [evaluate(job, data, tmp_path / "shards", "--limit", "3", "--shard", f"{k}/2") for k in (0, 1)]
    for result in (one, shards[1]):
        assert result.exit_code == 1, result.output
        assert f"Error: {data / 'fog' / 'im2.png'}: " in result.output and "Failed: 1 of 6 images" in result.output
    results = json.loads((tmp_path / "one" / "results.json").read_text())
    images = {row["label"]: row["images"] for row in results["tables"][0]["rows"]}
    assert (images["fog"], images["Clear"]) == (2, 3)  # fog lost im2; clear kept all three
    assert json.loads((tmp_path / "shards" / "results.json").read_text()) == results


def picture(height: int, width: int, seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))


@pytest.fixture(scope="module")
def pictures(job) -> Path:
    """Five images of two sizes."""
    folder = job["root"] / "pictures"
    folder.mkdir()
    for index, (height, width) in enumerate([(48, 64), (40, 56), (48, 64), (48, 64), (40, 56)]):
        iio.imwrite(folder / f"p{index}.png", picture(height, width, index))
    return folder


def split_runs(command: list[str], root: Path) -> dict[str, Path]:
    """The command into root/one (one process), root/shards (--shard 0/2, then 1/2) and root/gpus
    (--gpus 2); checks that shard 0 alone writes part of the files."""
    single = run(*command, "-o", str(root / "one"))
    assert single.exit_code == 0, single.output
    first = run(*command, "-o", str(root / "shards"), "--shard", "0/2")
    assert first.exit_code == 0, first.output
    assert 0 < len(outputs(root / "shards")) < len(outputs(root / "one"))
    second = run(*command, "-o", str(root / "shards"), "--shard", "1/2")
    assert second.exit_code == 0, second.output
    launched = run(*command, "-o", str(root / "gpus"), "--gpus", "2", "--master-port", free_port())
    assert launched.exit_code == 0, launched.output
    return {"one": root / "one", "shards": root / "shards", "gpus": root / "gpus", "launched": launched}


def test_degrade_files_do_not_depend_on_the_split(job, pictures, one_thread) -> None:
    runs = split_runs(["degrade", str(pictures), "--types", "gauss_noise,motion_blur", "--batch-size", "2", "--device", "cpu"],
                      job["root"] / "degrade")
    expected = outputs(runs["one"])
    assert len(expected) == 15
    assert outputs(runs["shards"]) == expected
    assert outputs(runs["gpus"]) == expected
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in runs["launched"].output.splitlines() if line.count("│") > 3}
    assert rows["clear"] == rows["gauss_noise"] == "5"  # the summary counts both workers


def test_prior_files_do_not_depend_on_the_split(job, pictures, one_thread) -> None:
    runs = split_runs(["prior", str(pictures), "--task", "deblur", "--checkpoint", str(job["checkpoint"]), "--model-type", "vit_micro",
                       "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--device", "cpu"],
                      job["root"] / "prior")
    expected = written(runs["one"])
    assert len(expected) == 11  # gray map and segments per image, and prior.json
    assert written(runs["shards"]) == expected
    assert written(runs["gpus"]) == expected
    assert "5 written" in runs["launched"].output  # the summary counts both workers

"""Every command against a table of bad inputs: one `Error:` line naming the file, the documented
exit code (2: refused before any work, nothing left behind; 1: some images failed, each reported,
the others written), never a traceback, and never the advice to load with weights_only=False.
Checkpoint files are data: a pickle that would run code is refused, never executed. A run killed
with SIGKILL and rerun ends with the files an uninterrupted run writes."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from core.io import write_image
from priors.restorer import Restorer, save_restorer
from robustsam_cli.main import cli

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SIZE = (32, 48)
FAST_AMG = ["--points-per-side", "2"]  # segment-everything at its cheapest: the bad inputs are what is tested


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


class _CreatesFileWhenUnpickled:
    """Unpickling this calls Path.touch(marker): what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _write_bad_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    """One file per way a checkpoint can be bad; the malicious ones create `marker` when unpickled unsafely."""
    folder.mkdir(parents=True)
    files = {kind: folder / f"{kind}.pth" for kind in ("zero-byte", "truncated", "text", "random", "malicious", "malicious-zip")}
    files["zero-byte"].write_bytes(b"")
    whole = folder / "whole.pth"
    torch.save({"weight": torch.arange(4096.0)}, whole)
    files["truncated"].write_bytes(whole.read_bytes()[:2000])
    files["text"].write_text("this is not a checkpoint\n")
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["malicious"].write_bytes(pickle.dumps({"model": _CreatesFileWhenUnpickled(marker)}))
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(files["malicious-zip"], "w") as archive:
        for entry in source.namelist():  # torch's own archive with a hostile data.pkl
            hostile = pickle.dumps(_CreatesFileWhenUnpickled(marker), protocol=2)
            archive.writestr(entry, hostile if entry.endswith("data.pkl") else source.read(entry))
    whole.unlink()
    return files


@dataclass
class Files:
    """The inputs: `good[role]` a working value of each role, `bad[(role, kind)]` (value, the file
    its error line must name)."""

    root: Path
    marker: Path
    good: dict[str, Path]
    bad: dict[tuple[str, str], tuple[Path, Path]]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    root = tmp_path_factory.mktemp("bad_input")
    good: dict[str, Path] = {}
    bad: dict[tuple[str, str], tuple[Path, Path]] = {}
    write_image(root / "whole.png", _image(9))
    whole_png = (root / "whole.png").read_bytes()
    bad_images = {"corrupt": b"this is not an image\n", "zero-byte": b"", "truncated": whole_png[: len(whole_png) // 2]}
    (root / "empty").mkdir()
    for role in ("images", "split", "pairs", "data"):
        bad[(role, "missing")] = (root / "missing", root / "missing")
    for role in ("images", "data"):
        bad[(role, "empty")] = (root / "empty", root / "empty")

    # Image folders: good (one image), and per bad kind the good image beside a bad one.
    for name in ("images", *bad_images):
        write_image(root / name / "a.png", _image(0))
    for kind, content in bad_images.items():
        (root / kind / "bad.png").write_bytes(content)
        bad[("images", kind)] = (root / kind, root / kind / "bad.png")
    good["images"] = root / "images"

    # eval: Robust-Seg split folders (clear/ + masks/); restore: hazy/ + clear/ pairs.
    masks = np.zeros((1, *SIZE), dtype=bool)
    masks[0, 8:24, 10:30] = True
    for name in ("split", "split-empty", *(f"split-{kind}" for kind in bad_images)):
        for folder in ("clear", "masks"):
            (root / name / folder).mkdir(parents=True)
        if name != "split-empty":
            write_image(root / name / "clear" / "a.png", _image(0))
            np.save(root / name / "masks" / "a.npy", masks)
    for name in ("pairs", "pairs-empty", *(f"pairs-{kind}" for kind in bad_images)):
        for folder in ("hazy", "clear"):
            (root / name / folder).mkdir(parents=True)
            if name != "pairs-empty":
                write_image(root / name / folder / "a.png", _image(0))
    for kind, content in bad_images.items():
        (root / f"split-{kind}" / "clear" / "bad.png").write_bytes(content)
        np.save(root / f"split-{kind}" / "masks" / "bad.npy", masks)
        bad[("split", kind)] = (root / f"split-{kind}", root / f"split-{kind}" / "clear" / "bad.png")
        (root / f"pairs-{kind}" / "hazy" / "bad.png").write_bytes(content)
        write_image(root / f"pairs-{kind}" / "clear" / "bad.png", _image(1))
        bad[("pairs", kind)] = (root / f"pairs-{kind}", root / f"pairs-{kind}" / "hazy" / "bad.png")
    good["split"], good["pairs"] = root / "split", root / "pairs"
    bad[("split", "empty")] = (root / "split-empty", root / "split-empty")
    bad[("pairs", "empty")] = (root / "pairs-empty", root / "pairs-empty")

    # Checkpoints: a restoration network; every kind of file that is not a checkpoint.
    good["network"] = root / "network.pt"
    save_restorer(good["network"], Restorer("dehaze", use_prior=False, width=4, levels=1))
    marker = root / "pwned"
    checkpoints = {**_write_bad_checkpoints(root / "checkpoints", marker), "missing": root / "checkpoints" / "missing.pth"}
    for kind, path in checkpoints.items():
        bad[("checkpoint", kind)] = bad[("network", kind)] = (path, path)

    # Prompt files and degrade's masks.
    (root / "prompts").mkdir()
    (root / "prompts" / "not-json.json").write_text("{'a.png': [")
    (root / "prompts" / "outside.json").write_text('{"/a.png": [{"box": [0, 0, 400, 10]}]}')
    (root / "prompts" / "unknown-image.json").write_text('{"/nope.png": [{"box": [0, 0, 4, 4]}]}')
    for kind in ("not-json", "outside", "unknown-image"):
        bad[("prompts", kind)] = (root / "prompts" / f"{kind}.json",) * 2
    (root / "masks-wrong-size").mkdir()
    np.save(root / "masks-wrong-size" / "a.npy", np.ones((1, 10, 10), dtype=bool))
    (root / "masks-corrupt").mkdir()
    (root / "masks-corrupt" / "a.npy").write_text("not an array\n")
    for kind in ("wrong-size", "corrupt"):
        bad[("masks", kind)] = (root / f"masks-{kind}", root / f"masks-{kind}" / "a.npy")

    (root / "afile").write_text("a file where a folder must go\n")
    bad[("output", "file")] = (root / "afile", root / "afile")
    (root / "whole.png").unlink()
    return Files(root, marker, good, bad)


CHECKPOINT = {kind: 2 for kind in ("missing", "zero-byte", "truncated", "text", "random", "malicious", "malicious-zip")}
IMAGES = {"missing": 2, "empty": 2, "corrupt": 1, "zero-byte": 1, "truncated": 1}
OUTPUT = {"file": 2}


@dataclass(frozen=True)
class Command:
    """`argv(values)` calls the command with a path per role; `roles[role][kind]` is the exit code
    that a bad file of that kind in that role must give. `output_file`: -o names a file, whose bad
    value is then a path under a file."""

    argv: Callable[[dict[str, Any]], list[str]]
    roles: dict[str, dict[str, int]]
    output_file: bool = False


def _segment(v):
    prompts = ["--prompts", str(v["prompts"])] if v["prompts"] else FAST_AMG
    return ["segment", str(v["images"]), "-o", str(v["output"]), "--checkpoint", str(v["checkpoint"]), *prompts]


def _degrade(v):
    masks = ["--masks", str(v["masks"])] if v["masks"] else []
    return ["degrade", str(v["images"]), "-o", str(v["output"]), "--types", "gauss_noise", "--device", "cpu", *masks]


def _prior(v):
    return ["prior", str(v["images"]), "-o", str(v["output"]), "--task", "dehaze", "--checkpoint", str(v["checkpoint"]),
            "--device", "cpu", *FAST_AMG]


def _eval(v):
    return ["eval", "--data", str(v["split"]), "--model", f"m={v['checkpoint']}", "--out", str(v["output"]), "--device", "cpu"]


def _restore(sub):
    def argv(v):
        data = [str(v["pairs"])] if sub != "run" else [str(v["images"])]
        network = ["--network", str(v["network"])] if sub != "train" else ["--task", "dehaze", "--checkpoint", str(v["checkpoint"]),
                                                                              "--steps", "1", "--batch-size", "1", "--crop", "16",
                                                                              "--width", "4", "--levels", "1", *FAST_AMG]
        return ["restore", sub, *data, *network, "-o", str(v["output"]), "--device", "cpu"]
    return argv


def _train(flag, glesam=False):
    def argv(v):
        method = ["--method", "glesam", "--stage", "decoder" if flag == "--checkpoint" else "unet"] if glesam else []
        start = ["--checkpoint", "default"] if flag == "--resume" and not glesam else []
        return ["train", *method, "--data", str(v["data"]), "--image-size", "32", "--max-steps", "1", "--val-every", "0",
                "-o", str(v["output"]), "--device", "cpu", "--no-progress", flag, str(v["checkpoint"]), *start]
    return argv


def _export(merge):
    def argv(v):
        given = ["--robust", str(v["checkpoint"]), "--sam", str(v["checkpoint"])] if merge else ["--checkpoint", str(v["checkpoint"])]
        return ["export", *given, "-o", str(v["output"])]
    return argv


COMMANDS: dict[str, Command] = {
    "segment": Command(_segment, {"images": IMAGES, "checkpoint": CHECKPOINT, "output": OUTPUT, "prompts": {"not-json": 2, "outside": 1, "unknown-image": 1}}),
    "degrade": Command(_degrade, {"images": IMAGES, "output": OUTPUT, "masks": {"wrong-size": 2, "corrupt": 2}}),
    "prior": Command(_prior, {"images": IMAGES, "checkpoint": CHECKPOINT, "output": OUTPUT}),
    "eval": Command(_eval, {"split": IMAGES, "checkpoint": CHECKPOINT, "output": OUTPUT}),
    "restore-run": Command(_restore("run"), {"images": IMAGES, "network": CHECKPOINT, "output": OUTPUT}),
    "restore-eval": Command(_restore("eval"), {"pairs": IMAGES, "network": CHECKPOINT, "output": OUTPUT}, output_file=True),
    # Training data is all or nothing: a bad image stops it before the network is written.
    "restore-train": Command(_restore("train"), {"pairs": dict.fromkeys(IMAGES, 2), "checkpoint": CHECKPOINT, "output": OUTPUT},
                             output_file=True),
    "train-checkpoint": Command(_train("--checkpoint"), {"checkpoint": CHECKPOINT, "output": OUTPUT, "data": {"missing": 2, "empty": 2}}),
    "train-sam-checkpoint": Command(_train("--sam-checkpoint"), {"checkpoint": CHECKPOINT}),
    "train-resume": Command(_train("--resume"), {"checkpoint": CHECKPOINT}),
    "train-glesam-checkpoint": Command(_train("--checkpoint", glesam=True), {"checkpoint": CHECKPOINT}),
    "train-glesam-resume": Command(_train("--resume", glesam=True), {"checkpoint": CHECKPOINT}),
    "info": Command(lambda v: ["info", str(v["checkpoint"])], {"checkpoint": CHECKPOINT}),
    "export": Command(_export(merge=False), {"checkpoint": CHECKPOINT, "output": OUTPUT}, output_file=True),
    "export-merge": Command(_export(merge=True), {"checkpoint": CHECKPOINT}, output_file=True),
    "export-onnx": Command(lambda v: ["export", "--onnx", str(v["output"])], {"output": OUTPUT}),
}
CASES = [(command, role, kind) for command, spec in COMMANDS.items() for role, kinds in spec.roles.items() for kind in kinds]
# Exit 1 with nothing written: every image failed before the first write.
NOTHING_WRITTEN = {("segment", "prompts", "outside"), ("segment", "prompts", "unknown-image")}
# What else the error line must say: prompt keys as the file wrote them (an absolute key keeps its '/').
ERROR_TEXT = {("segment", "prompts", "outside"): "image '/a.png', prompt 0, field 'box'",
              ("segment", "prompts", "unknown-image"): "image '/nope.png' not found"}


def _values(files: Files, spec: Command, out: Path) -> dict[str, Any]:
    output = out / ("result.json" if spec.output_file else "out")
    return {**files.good, "checkpoint": Path("default"), "data": "synthetic:2", "output": output, "prompts": None, "masks": None}


def _invoke(argv: list[str]) -> tuple[str, int]:
    """The command's output and exit code, after the checks every call must pass: no exception
    escaped the command (it would print a traceback), no unsafe advice, no doubled backticks."""
    result = CliRunner().invoke(cli, argv)
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception} escaped (a traceback for the user)\n{output}")
    assert "Traceback" not in output and "weights_only=False" not in output and "``" not in output, output
    return output, result.exit_code


@pytest.mark.parametrize("command, role, kind", CASES, ids=["-".join(case) for case in CASES])
def test_bad_input_is_one_error_line(files: Files, tmp_path: Path, command: str, role: str, kind: str) -> None:
    spec = COMMANDS[command]
    values = _values(files, spec, tmp_path)
    bad, named = files.bad[(role, kind)]
    if role == "output":
        bad = bad / "result.json" if spec.output_file else bad
    values[role] = bad
    inputs = {path: path.stat().st_mtime_ns for path in files.root.rglob("*")}
    output, exit_code = _invoke(spec.argv(values))
    expected = spec.roles[role][kind]
    assert exit_code == expected, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {named}: "), output
    assert ERROR_TEXT.get((command, role, kind), "") in errors[0], output
    assert not files.marker.exists(), "unpickling ran the checkpoint's code"
    assert {path: path.stat().st_mtime_ns for path in files.root.rglob("*")} == inputs, "the run wrote among its inputs"
    if expected == 1:
        assert [line for line in output.splitlines() if line.startswith("Failed: 1 of ")], output
    if expected == 2 or (command, role, kind) in NOTHING_WRITTEN:
        assert not list(tmp_path.iterdir()), f"a refused run left {sorted(tmp_path.rglob('*'))}"


EMPTY_ROLE = {"segment": "images", "degrade": "images", "prior": "images", "eval": "split", "restore-run": "images"}


@pytest.mark.parametrize("command", sorted(EMPTY_ROLE))
def test_allow_empty_is_a_warning_and_exit_0(files: Files, tmp_path: Path, command: str) -> None:
    spec = COMMANDS[command]
    values = _values(files, spec, tmp_path)
    values[EMPTY_ROLE[command]] = empty = files.bad[(EMPTY_ROLE[command], "empty")][0]
    output, exit_code = _invoke([*spec.argv(values), "--allow-empty"])
    assert exit_code == 0, output
    lines = [line for line in output.splitlines() if line.startswith(("Error:", "Warning:"))]
    assert len(lines) == 1 and lines[0].startswith(f"Warning: {empty}"), output
    assert not list(tmp_path.iterdir()), f"an empty run left {sorted(tmp_path.rglob('*'))}"


def test_the_malicious_checkpoints_would_run_code_if_unpickled(tmp_path: Path) -> None:
    """Plain pickle runs the hostile files' code (so the table above can fail)."""
    marker = tmp_path / "pwned"
    checkpoints = _write_bad_checkpoints(tmp_path / "checkpoints", marker)
    pickle.loads(checkpoints["malicious"].read_bytes())
    assert marker.exists()
    marker.unlink()
    with zipfile.ZipFile(checkpoints["malicious-zip"]) as archive:
        pickle.loads(archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl"))))
    assert marker.exists()


def _kill_when(argv: list[str], ready: Callable[[], bool], log: Path, timeout: float = 300) -> None:
    """Runs `robustsam argv` in a subprocess (one torch thread) and kill -9s it once `ready()`;
    fails if it ends before."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with log.open("w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "robustsam_cli", *argv], cwd=ROOT, env=env,
                                   stdout=handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the run ended (or hung) before it could be killed mid-run:\n{log.read_text()}")
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def _files(folder: Path) -> dict[str, bytes]:
    """Every finished file under `folder` by relative path (a kill mid-write leaves a hidden temporary)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_degrade_killed_mid_run_resumes_to_the_same_files(tmp_path: Path) -> None:
    source = tmp_path / "clear"
    for index in range(8):
        write_image(source / f"{index:02d}.png", _image(index))
    kinds = "gauss_noise,motion_blur,fog,elastic_transform"
    argv = ["degrade", str(source), "--types", kinds, "--batch-size", "2", "--device", "cpu"]
    killed = tmp_path / "killed"
    _kill_when([*argv, "-o", str(killed)], lambda: any((killed / "gauss_noise").glob("*.png")), tmp_path / "log")
    partial = _files(killed)
    assert 0 < len(partial) < 8 * 5, "the kill did not land mid-run"
    for out in (killed, tmp_path / "whole"):
        output, exit_code = _invoke([*argv, "-o", str(out)])
        assert exit_code == 0, output
    resumed, whole = _files(killed), _files(tmp_path / "whole")
    assert len(whole) == 8 * 5 and resumed == whole


def test_train_killed_mid_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    argv = ["train", "--data", "synthetic:4", "--image-size", "32", "--batch-size", "1", "--max-steps", "6",
            "--save-every", "2", "--val-every", "0", "--device", "cpu", "--no-progress", "--checkpoint", "default"]
    killed = tmp_path / "killed"
    _kill_when([*argv, "-o", str(killed)], lambda: (killed / "checkpoint-0000002.pth").is_file(), tmp_path / "log")
    assert not (killed / "final.pth").exists(), "the kill did not land mid-run"
    latest = max(killed.glob("checkpoint-*.pth"))
    output, exit_code = _invoke([*argv, "-o", str(killed), "--resume", str(latest)])
    assert exit_code == 0, output
    output, exit_code = _invoke([*argv, "-o", str(tmp_path / "whole")])
    assert exit_code == 0, output
    resumed = torch.load(killed / "final.pth", weights_only=True)
    whole = torch.load(tmp_path / "whole" / "final.pth", weights_only=True)
    assert resumed["step"] == whole["step"] == 6
    assert resumed["model"].keys() == whole["model"].keys()
    assert all(torch.equal(resumed["model"][key], whole["model"][key]) for key in whole["model"])
    assert resumed["scheduler"] == whole["scheduler"]
    moments = [(a, b) for key in whole["optimizer"]["state"] for a, b in zip(resumed["optimizer"]["state"][key].values(),
                                                                            whole["optimizer"]["state"][key].values())]
    assert moments and all(torch.equal(a, b) for a, b in moments)

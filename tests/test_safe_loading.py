"""Checkpoint files are data: a pickle that would run code is refused, never executed, and every
unreadable checkpoint is one `Error:` line naming the file, exit code 2, with no traceback."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from core.data.io import write_image
from robustsam_cli.main import cli


class _CreatesFileWhenUnpickled:
    """Unpickling this calls Path.touch(marker): what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _bad_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    """Files that are not checkpoints, one per way a checkpoint can be bad."""
    files = {
        "malicious": folder / "malicious.pth",
        "malicious_zip": folder / "malicious_zip.pth",
        "text": folder / "text.pth",
        "empty": folder / "empty.pth",
        "random": folder / "random.pth",
        "truncated": folder / "truncated.pth",
    }
    files["malicious"].write_bytes(pickle.dumps({"model": _CreatesFileWhenUnpickled(marker)}))
    genuine = folder / "genuine.pth"
    torch.save({"weight": torch.zeros(2)}, genuine)
    with zipfile.ZipFile(genuine) as source, zipfile.ZipFile(files["malicious_zip"], "w") as archive:
        for entry in source.namelist():  # torch's own archive with a hostile data.pkl
            hostile = pickle.dumps(_CreatesFileWhenUnpickled(marker), protocol=2)
            archive.writestr(entry, hostile if entry.endswith("data.pkl") else source.read(entry))
    files["text"].write_text("this is not a checkpoint\n")
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    whole = folder / "whole.pth"
    torch.save({"weight": torch.arange(4096.0)}, whole)
    files["truncated"].write_bytes(whole.read_bytes()[:2000])
    return files


COMMANDS = {
    "info": lambda ckpt, work: ["info", str(ckpt)],
    "segment": lambda ckpt, work: ["segment", str(work / "images"), "-o", str(work / "out"), "--checkpoint", str(ckpt)],
    "prior": lambda ckpt, work: ["prior", str(work / "images"), "-o", str(work / "out"), "--task", "dehaze",
                                 "--checkpoint", str(ckpt)],
    "train": lambda ckpt, work: ["train", "--data", "synthetic:2", "--max-steps", "1", "-o", str(work / "out"),
                                 "--sam-checkpoint", str(ckpt)],
    "export": lambda ckpt, work: ["export", "--robust", str(ckpt), "--sam", str(ckpt), "-o", str(work / "out.pth")],
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("safe_loading")
    (folder / "images").mkdir()
    write_image(folder / "images" / "a.png", np.full((32, 48, 3), 128, dtype=np.uint8))
    return folder


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", ["malicious", "malicious_zip", "text", "empty", "random", "truncated"])
def test_bad_checkpoint_is_one_error_line_and_never_runs_code(work: Path, command: str, kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    checkpoint = _bad_checkpoints(tmp_path, marker)[kind]
    result = CliRunner().invoke(cli, COMMANDS[command](checkpoint, work))
    output = result.output
    assert result.exit_code == 2, output
    assert not marker.exists(), "unpickling ran the checkpoint's code"
    assert "Traceback" not in output and "weights_only=False" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(checkpoint) in errors[0], output
    assert not (work / "out").exists() and not (work / "out.pth").exists(), "a refused run left output behind"


def test_plain_pickle_load_would_have_run_the_code(tmp_path: Path) -> None:
    """The malicious file is real: an unsafe load creates the marker (so the test above can fail)."""
    marker = tmp_path / "pwned"
    checkpoint = _bad_checkpoints(tmp_path, marker)["malicious"]
    with open(checkpoint, "rb") as handle:
        pickle.load(handle)
    assert marker.exists()

"""What the serve tests share: a folder with a link leading out of it, a workbench on the built-in
model, the real server on a free loopback port, and reading masks back."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from click.testing import CliRunner, Result
from pycocotools import mask as mask_utils

from core.model.default_model import DEFAULT_CHECKPOINT
from robustsam_cli.main import cli
from serve import BackgroundServer, create_app, open_workbench
from serve.workbench import Workbench

EXAMPLES = Path(__file__).parents[1] / "examples" / "images"
IMAGES = ("fog.png", "gauss_noise.png")


def image_folder(root: Path) -> Path:
    """root/images with two example images and `link.png`, a link to an image outside the folder
    (root/secret.png), which the server must never show."""
    folder = root / "images"
    folder.mkdir()
    for name in IMAGES:
        shutil.copyfile(EXAMPLES / name, folder / name)
    shutil.copyfile(EXAMPLES / "motion_blur.png", root / "secret.png")
    (folder / "link.png").symlink_to(root / "secret.png")
    return folder


def workbench(folder: Path, out: Optional[Path], **options: Any) -> Workbench:
    return open_workbench(folder, DEFAULT_CHECKPOINT, out=out, device="cpu", **options)


@contextmanager
def running(bench: Workbench, **options: Any) -> Iterator[BackgroundServer]:
    """The app on `bench` served on a free loopback port while the block runs."""
    command = f"robustsam segment {bench.folder.root}"
    replay = {"robust": command, "sam": f"{command} --mode sam", "glesam": f"{command} --checkpoint GLESAM"}
    app = create_app(bench, checkpoint="default", replay=replay, **options)
    with BackgroundServer(app) as server:
        yield server


def rle_mask(rle: dict) -> np.ndarray:
    """(H, W) bool of the API's COCO RLE."""
    return mask_utils.decode(dict(rle, counts=rle["counts"].encode("ascii"))).astype(bool)


def run_cli(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}

"""Shared fixtures: reference data, and small synthetic-weight models that run fast on a CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from core import RobustSam, get_config
from core.model.checkpoint import expected_shapes
from core.model.synthetic_weights import synthetic_state_dict

DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` are skipped where no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def load_manifest(model_type: str) -> dict[str, list[int]]:
    return json.loads((DATA / f"robustsam_keys_{model_type}.json").read_text())


def model_from_state(model_type: str, state: dict[str, torch.Tensor]) -> RobustSam:
    model = RobustSam(get_config(model_type), model_type)
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops run faster on one torch thread; two mostly wait on each other on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def micro_state() -> dict[str, torch.Tensor]:
    """Deterministic vit_micro weights (same definition as the released-key synthetic weights)."""
    return dict(synthetic_state_dict(expected_shapes("vit_micro")))


@pytest.fixture()
def micro_model(micro_state) -> RobustSam:
    return model_from_state("vit_micro", micro_state)


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory, micro_state) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "robustsam_micro.pth"
    torch.save(micro_state, path)
    return path


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    """A smooth 96x160 RGB test image with a bright disc and a dark bar."""
    yy, xx = np.mgrid[0:96, 0:160]
    base = np.stack([xx * 1.2, yy * 2.0, (xx + yy) * 0.8], axis=-1)
    disc = ((yy - 40) ** 2 + (xx - 60) ** 2) < 20**2
    base[disc] = [230, 200, 40]
    base[70:80, 90:150] = [20, 30, 200]
    return np.clip(base, 0, 255).astype(np.uint8)


def whole_and_resumed(trainer: Callable[..., Any], config: Callable[..., Any], tmp_path: Path,
                      **common: Any) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """(whole, resumed, start): a trainer run to step 4 at once, one run to step 2 and resumed from its
    checkpoint-0000002.pth to step 4, and the weights the whole run started from. `common` needs
    save_every=2 so that the checkpoint exists."""
    whole = trainer(config(output=str(tmp_path / "whole"), max_steps=4, **common))
    start = {key: value.clone() for key, value in whole.model.state_dict().items()}
    whole.run()
    trainer(config(output=str(tmp_path / "first"), max_steps=2, **common)).run()
    resumed = trainer(config(output=str(tmp_path / "second"), max_steps=4, **common),
                      resume=str(tmp_path / "first" / "checkpoint-0000002.pth"))
    assert resumed.step == 2
    resumed.run()
    return whole, resumed, start

"""A golden test of RobustSAM's robust path on a micro model: outputs against stored references.

The model has deterministic synthetic weights (`core.model.synthetic_weights`: each tensor a pure
function of its key), the image is drawn from numpy formulas, so the references in
tests/data/golden_robust_micro.npz hold on any machine. Any change to the robust modules'
computation (e.g. swapping SelectiveConv's BatchNorm and InstanceNorm branches) moves them.
Regenerate only after a deliberate change of the model: `python3 tests/test_golden.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import RobustPredictor, RobustSam, get_config  # noqa: E402
from core.model.checkpoint import expected_shapes  # noqa: E402
from core.model.synthetic_weights import synthetic_state_dict  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "golden_robust_micro.npz"
PROMPTS = {
    "box": dict(box=np.array([30.0, 15.0, 100.0, 70.0])),
    "points": dict(point_coords=np.array([[60.0, 40.0], [120.0, 75.0]]), point_labels=np.array([1, 0])),
}


def _image() -> np.ndarray:
    """A 96x160 RGB scene: gradients, a bright disc, a dark bar, a band of fine stripes (degradation-like texture)."""
    yy, xx = np.mgrid[0:96, 0:160]
    image = np.stack([xx * 1.2, yy * 2.0, (xx + yy) * 0.8], axis=-1)
    image[((yy - 40) ** 2 + (xx - 60) ** 2) < 20**2] = [230, 200, 40]
    image[70:80, 90:150] = [20, 30, 200]
    image[:, 130:] += 40 * np.sin(xx[:, 130:] * 1.7)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def golden_outputs() -> dict[str, np.ndarray]:
    """Per prompt: the robust path's low-res mask logits (3, 32, 32) and predicted IoUs (3,) (multimask output)."""
    model = RobustSam(get_config("vit_micro"), "vit_micro")
    model.load_state_dict(synthetic_state_dict(expected_shapes("vit_micro")))
    predictor = RobustPredictor(model.eval(), robust=True)
    predictor.set_image(_image())
    outputs = {}
    for name, prompt in PROMPTS.items():
        _, scores, low_res = predictor.predict(**prompt, multimask_output=True)
        outputs[f"{name}_logits"] = low_res
        outputs[f"{name}_iou"] = scores
    return outputs


def test_robust_path_matches_its_golden_outputs() -> None:
    torch.manual_seed(0)  # nothing should draw from it; the outputs must not depend on it
    reference = np.load(REFERENCE)
    outputs = golden_outputs()
    assert sorted(outputs) == sorted(reference.files)
    for name, value in outputs.items():
        expected = reference[name]
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-4 * scale, err_msg=name)


if __name__ == "__main__":
    np.savez_compressed(REFERENCE, **golden_outputs())
    print(f"wrote {REFERENCE}")

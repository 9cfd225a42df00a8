"""Writes examples/: three held-out synthetic scenes, degraded, with box prompts from their masks.

    python3 scripts/make_examples.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.degradations import degrade  # noqa: E402
from core.io import atomic_path, write_image  # noqa: E402
from core.evaluation.prompt_sampling import mask_box  # noqa: E402
from core.data.scenes import make_scene  # noqa: E402

SCENES = {2_000_000: "fog", 2_000_001: "motion_blur", 2_000_002: "gauss_noise"}


def main() -> None:
    folder = ROOT / "examples"
    prompts = {}
    for seed, kind in SCENES.items():
        scene = make_scene(seed)
        clear = torch.from_numpy(scene.image).permute(2, 0, 1)[None].float() / 255
        degraded = degrade(clear, kind, generator=torch.Generator().manual_seed(seed))
        pixels = (degraded[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
        name = f"{kind}.png"
        write_image(folder / "images" / name, pixels)
        prompts[name] = [{"box": [int(v) for v in mask_box(mask)]} for mask in scene.masks]
    with atomic_path(folder / "boxes.json") as tmp:
        lines = [f"  {json.dumps(name)}: {json.dumps(boxes)}" for name, boxes in prompts.items()]
        tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main()

"""The built-in default model: a tiny RobustSAM trained on synthetic scenes, shipped in the package.

It lets every command run right after install; real images need a real checkpoint.
`scripts/build_default_model.py` regenerates it from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

DEFAULT_CHECKPOINT = Path(__file__).parents[1] / "assets" / "robustsam_default.pth"
DEFAULT_NOTICE = "built-in tiny model trained on synthetic scenes; pass --checkpoint for real images"


def default_checkpoint() -> Optional[Path]:
    """The packaged checkpoint, or None in an installation that lacks it."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None

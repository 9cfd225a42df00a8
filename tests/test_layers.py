"""`core/` is layered: a package imports only from packages below it, so low-level code never pulls
in what runs it. Checked by parsing every import (module level and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
# Lowest first. A package may import from any package on a lower line, never from its own line or above.
LAYERS = (
    ("errors", "device"),
    ("io", "geometry"),
    ("parallel",),  # the generic launcher, shards and merging: runs import it, it imports no run
    ("model", "data"),
    ("glesam", "degradations", "deploy", "sam2"),
    ("inference",),
    ("tiling",),  # tiled segmentation and degradation of large images, on inference and degradations
    ("evaluation", "video"),
)
# Debt, named so that it cannot grow: `segment(..., tile=)` and `plan_degrade(..., tile=)` hand large
# images to core.tiling from inside the runs that core.tiling builds on (imports inside the function).
# Moving that dispatch up into core.tiling (or its callers) empties this set.
KNOWN_UPWARD = {("inference/segment.py", "tiling"), ("degradations/run.py", "tiling")}
RANK = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _package(path: Path) -> str:
    """The core package a file belongs to ('errors' for core/errors.py)."""
    return path.relative_to(CORE).parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    """The core packages that `path` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_parts = ["core", *path.relative_to(CORE).with_suffix("").parts]
    if module_parts[-1] == "__init__":
        module_parts.pop()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "core" and len(parts) > 1:
                found.add(parts[1])
    return found


def _files() -> list[Path]:
    return sorted(path for path in CORE.rglob("*.py") if path.parent != CORE or path.name != "__init__.py")


def test_every_core_package_has_a_layer() -> None:
    packages = {_package(path) for path in _files()}
    assert packages <= set(RANK), f"place {sorted(packages - set(RANK))} in LAYERS of {__file__}"


@pytest.mark.parametrize("path", _files(), ids=lambda path: str(path.relative_to(CORE)))
def test_imports_go_down(path: Path) -> None:
    own = _package(path)
    upward = sorted(other for other in _imported_packages(path) if other != own and other in RANK and RANK[other] >= RANK[own]
                    and (path.relative_to(CORE).as_posix(), other) not in KNOWN_UPWARD)
    assert not upward, f"core/{path.relative_to(CORE)} ({own}) imports {upward}, which are not below it"


@pytest.mark.parametrize("known", sorted(KNOWN_UPWARD), ids=lambda known: f"{known[0]}->{known[1]}")
def test_known_upward_imports_still_exist(known: tuple[str, str]) -> None:
    path, other = known
    assert other in _imported_packages(CORE / path), f"core/{path} no longer imports {other}: drop it from KNOWN_UPWARD"

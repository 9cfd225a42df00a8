"""The options several commands share are one definition (`robustsam_cli.options`), so they agree."""

from __future__ import annotations

import click
import pytest

import robustsam_cli
from core.model.checkpoint import infer_model_type, read_state_dict
from core.model.default_model import DEFAULT_CHECKPOINT, DEFAULT_MODEL_TYPE
from robustsam_cli.main import cli

MODEL_COMMANDS = (("segment",), ("prior",), ("export",), ("train",), ("restore", "run"))
SHARED = ("checkpoint", "sam_checkpoint", "model_type", "mode", "device", "precision")


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _option(path: tuple[str, ...], name: str) -> click.Option | None:
    return next((p for p in _command(path).params if p.name == name and isinstance(p, click.Option)), None)


def test_builtin_model_type_is_the_packaged_files() -> None:
    assert infer_model_type(read_state_dict(DEFAULT_CHECKPOINT), DEFAULT_CHECKPOINT) == DEFAULT_MODEL_TYPE


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=" ".join)
def test_model_type_is_a_choice_naming_the_builtin_type(path) -> None:
    option = _option(path, "model_type")
    assert option is not None and isinstance(option.type, click.Choice), path
    assert DEFAULT_MODEL_TYPE in option.type.choices and DEFAULT_MODEL_TYPE in (option.help or "")


@pytest.mark.parametrize("name", SHARED)
def test_shared_options_agree_across_commands(name) -> None:
    """Every command that has the option gives it the same choices and default."""
    commands = [*MODEL_COMMANDS, ("eval",), ("degrade",)]
    found = [option for option in (_option(path, name) for path in commands) if option is not None]
    assert len(found) >= 2, name
    choices = {tuple(getattr(option.type, "choices", ())) for option in found}
    assert len(choices) == 1 and len({option.default for option in found}) == 1, name


def test_one_images_per_second_column() -> None:
    """Progress columns are defined once, in robustsam_cli.options."""
    import importlib
    import pkgutil
    from rich.progress import ProgressColumn

    owners = set()
    for module in pkgutil.iter_modules(robustsam_cli.__path__):
        if module.name == "__main__":
            continue  # runs the command line when imported
        loaded = importlib.import_module(f"robustsam_cli.{module.name}")
        owners |= {value.__module__ for value in vars(loaded).values()
                   if isinstance(value, type) and issubclass(value, ProgressColumn) and value.__module__.startswith("robustsam_cli")}
    assert owners == {"robustsam_cli.options"}

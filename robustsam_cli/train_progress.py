"""How `robustsam train` shows a run: a progress bar on a terminal, plain whole lines elsewhere."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from train.loop import StepReport

from .defaults import console


@contextmanager
def step_reporter(enabled: bool = True) -> Iterator[Callable[[StepReport], None]]:
    """The `on_step` callback of a training run (`train.loop.TrainingRun.run`). Not a terminal (CI, nohup): one line per
    logged step instead of a bar, so logs read whole; validation scores are a line either way."""
    out = console()
    plain = not out.is_terminal
    progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=out, disable=plain or not enabled)
    task = progress.add_task("train", total=None, info="")

    def report(step: StepReport) -> None:
        if not enabled:
            return
        # gradient norms and GleSAM's generator_step (an iteration number) are in log.jsonl only
        shown = " ".join(f"{key} {value:.4f}" for key, value in step.losses.items()
                         if not key.endswith("grad_norm") and key != "generator_step")
        info = f"{shown} | {step.images_per_s:.1f} img/s"
        progress.update(task, completed=step.step, total=step.total, info=info)
        if plain and step.logged:
            out.print(f"train step {step.step}/{step.total} {info}", markup=False, highlight=False)
        if step.validation:
            scores = ", ".join(f"{key} {value:.3f}" for key, value in step.validation.items())
            progress.console.print(f"step {step.step} validation IoU: {scores}", markup=False, highlight=False)

    with progress:
        yield report

"""Priors of many images: the missing ones written under an output folder, resumable, split over
shards by pixels (`--shard`, torchrun workers).

    summary = generate_priors(PriorGenerator(model), collect_images(["frames/"]), "priors/", "deblur")

Each image's files depend only on the image and the generator, so a shard writes the files of its
images and nothing else; a killed run resumes with the images whose files are missing.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from core.io import read_image
from core.errors import per_image
from core.model.checkpoint import RobustModulesUninitialized
from core.inference.loading import ModelChoice
from core.parallel import Shard, counter, image_area, shard_items, worker_device

from .data import collect_images, prior_files
from .generate import PriorGenerator, write_prior

# (image path, its one-line error or None, whether one segment covers it)
ImageCallback = Callable[[Path, Optional[str], bool], None]


@dataclass
class PriorSummary:
    """A run's counts: priors written, images skipped (files already there), and the one-line errors
    of the images that failed and the paths of those whose prior is a single segment."""

    written: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    single: list[str] = field(default_factory=list)


@contextmanager
def sam_path_quiet(robust: bool) -> Iterator[None]:
    """Silences the missing-robust-modules warning when building a model for SAM's own path, which never uses them."""
    with warnings.catch_warnings():
        if not robust:
            warnings.simplefilter("ignore", RobustModulesUninitialized)
        yield


def prior_part(entries: Sequence[tuple[str, Path]], shard: Optional[Shard]) -> list[tuple[str, Path]]:
    """The (name, path) entries whose priors `shard` writes, balanced by pixels (all for None)."""
    return shard_items(entries, [image_area(path) for _, path in entries], shard)


def generate_priors(
    generator: PriorGenerator,
    entries: Sequence[tuple[str, Path]],
    output: Path,
    task: str,
    features: bool = False,
    overwrite: bool = False,
    on_image: ImageCallback = lambda path, error, single: None,
) -> PriorSummary:
    """Writes the priors of `entries` ((name, path)) under `output` whose files are missing (all of
    them with `overwrite`): the gray map, the partition for task 'deblur', the features when asked.

    An unreadable image is a failure of that image alone; `on_image` is called after each image.
    """
    wanted = ["gray"] + (["segments"] if task == "deblur" else []) + (["features"] if features else [])
    summary = PriorSummary()
    for name, path in entries:
        files = prior_files(output, name)
        error, single = None, False
        if not overwrite and all(files[key].is_file() for key in wanted):
            summary.skipped += 1
        else:
            failed: list[str] = []
            with per_image(failed.append):
                result = generator(read_image(path), partition=task == "deblur", features=features)
            if failed:
                error = failed[0]
                summary.failures.append(error)
            else:
                write_prior(files, result)
                summary.written += 1
                single = len(np.unique(result.gray)) <= 1
                if single:
                    summary.single.append(str(path))
        on_image(path, error, single)
    return summary


@dataclass
class PriorLaunch:
    """What every worker of a launched `prior` needs: the model, the generator settings, the images
    (files or folders, with the glob for folders), the output folder and what to write."""

    model: ModelChoice
    cuda: bool
    robust: bool
    settings: dict[str, float]
    images: list[Path]
    pattern: str
    output: Path
    task: str
    features: bool = False
    overwrite: bool = False


def prior_worker(job: PriorLaunch, shard: Shard, progress: Callable[[int, int], None]) -> PriorSummary:
    """torchrun entry: builds the generator on this rank's device and writes its shard's priors;
    returns its summary."""
    with sam_path_quiet(job.robust):
        generator = PriorGenerator(job.model.open(worker_device(job.cuda)), robust=job.robust, **job.settings)
    entries = prior_part(collect_images(job.images, job.pattern), shard)
    advance = counter(progress, len(entries))
    return generate_priors(generator, entries, job.output, job.task, job.features, job.overwrite, lambda *image: advance())

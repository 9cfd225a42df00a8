"""The paper's Table 7 in miniature: the built-in model's stage B retrained without parts of the
robust path, each measured like the shipped model. Writes docs/ablation.md.

Needs the work folder of `scripts/build_default_model.py` (stage A's SAM weights `stage-a/sam.pth`
and the full stage B `stage-b/final.pth`); trains the three ablated variants into the same folder
(about 15 minutes each on one CPU core; `--jobs 3` runs them side by side).

    python3 scripts/ablation.py [--work build/default-model] [--jobs 1] [--eval-count 300]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from build_default_model import STAGE_B, measure  # noqa: E402
from core import build_robustsam  # noqa: E402

# Table 7's rows, each adding one part: (row name, parts left out).
VARIANTS = (
    ("AMFG only", ("fourier", "aotg", "rot")),
    ("+ Fourier", ("aotg", "rot")),
    ("+ AOTG", ("rot",)),
    ("+ ROT (full RobustSAM, the built-in model)", ()),
)
COLUMNS = ("geometric/box", "geometric/points", "organic/box", "organic/points")


def variant_folder(work: Path, removed: tuple[str, ...]) -> Path:
    return work / "stage-b" if not removed else work / ("ablation-no-" + "-".join(removed))


def train_variant(work: Path, removed: tuple[str, ...]) -> None:
    """Stage B with the parts left out, in a child process (one torch thread, like the build script)."""
    output = variant_folder(work, removed)
    if (output / "final.pth").is_file():
        return
    ablate = [argument for part in removed for argument in ("--ablate", part)]
    command = [sys.executable, "-c", "import sys, torch; torch.set_num_threads(1); from robustsam_cli.main import cli; "
               "cli.main(sys.argv[1:], prog_name='robustsam')", "train", *STAGE_B, *ablate, "--no-progress",
               "--checkpoint", str(work / "stage-a" / "sam.pth"), "-o", str(output)]
    print(" ".join(["robustsam", "train", *STAGE_B, *ablate, "--checkpoint", str(work / "stage-a" / "sam.pth"),
                    "-o", str(output)]), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def report(rows: list[tuple[str, tuple[str, ...], dict[str, dict[str, float]]]], work: Path, count: int) -> str:
    header = " | ".join(f"{column} robust - SAM" for column in COLUMNS)
    where = work.relative_to(ROOT) if work.is_relative_to(ROOT) else work
    lines = [
        "# Ablation of the robust path (the paper's Table 7, in miniature)",
        "",
        f"Produced by `python3 scripts/ablation.py --work {where} --eval-count {count}` on {date.today()},",
        "after `python3 scripts/build_default_model.py` (same work folder). Every row is stage B of the",
        "built-in model (same stage-A SAM, data, seed and 18 epochs) trained with the parts listed left out",
        "(`robustsam train --ablate ...`); the last row is the built-in model itself. IoU of the single-mask",
        f"output on held-out scenes ({count} per style), each degraded by one of the 15 types at level 3, on",
        "the robust path, and its difference from the same weights on SAM's path (the frozen tiny SAM every",
        "row starts from).",
        "",
        "| row | left out | " + " | ".join(f"{column} degraded" for column in COLUMNS) + " | " + header + " |",
        "|---|---|" + "---:|" * (2 * len(COLUMNS)),
    ]
    for name, removed, scores in rows:
        degraded = [scores[column]["robust/degraded"] for column in COLUMNS]
        gains = [scores[column]["robust/degraded"] - scores[column]["sam/degraded"] for column in COLUMNS]
        cells = [f"{value:.3f}" for value in degraded] + [f"{value:+.3f}" for value in gains]
        lines.append(f"| {name} | {', '.join(removed) or '-'} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "One training run per row (seed 1). Stage B's validation IoU swung by up to 0.08 between checkpoints",
        "500 steps apart at the starting learning rate (each folder's `log.jsonl`), so differences of about",
        "0.01 between rows are not evidence of an effect.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "default-model")
    parser.add_argument("--jobs", type=int, default=1, help="Variants trained at once (one CPU core each).")
    parser.add_argument("--eval-count", type=int, default=300, help="Held-out scenes per style.")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "ablation.md")
    args = parser.parse_args()
    work = args.work.resolve()
    if not (work / "stage-b" / "final.pth").is_file() or not (work / "stage-a" / "sam.pth").is_file():
        sys.exit(f"{work}: run `python3 scripts/build_default_model.py --work {args.work}` first")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda variant: train_variant(work, variant[1]), VARIANTS))
    torch.set_num_threads(2)
    rows = []
    for name, removed in VARIANTS:
        model = build_robustsam(None, variant_folder(work, removed) / "final.pth", sam_checkpoint=work / "stage-a" / "sam.pth")
        model.mask_decoder.ablate(removed)
        rows.append((name, removed, measure(model, args.eval_count)))
    args.output.write_text(report(rows, work, args.eval_count), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

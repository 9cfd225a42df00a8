"""Evaluation tables as cells, Markdown, JSON, and (with matplotlib) PNG bar charts (the console
tables are drawn by `robustsam_cli.eval`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from ..io import atomic_path
from .protocol import METRIC_LABELS, Row, Table


def _format(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def _header(models: list[str], metrics: tuple[str, ...]) -> list[str]:
    return ["Condition", "Images", "Objects"] + [f"{model} {METRIC_LABELS[m]}" for model in models for m in metrics]


def row_cells(row: Row, models: list[str], metrics: tuple[str, ...]) -> list[str]:
    """A row's label, image and object counts, then each model's metrics ("-" for none)."""
    return [row.label, str(row.images), str(row.objects)] + [_format(row.values[model][m]) for model in models for m in metrics]


def last_condition(table: Table) -> Optional[Row]:
    """The last per-condition row, after which the summary rows follow."""
    conditions = [row for row in table.rows if row.kind == "condition"]
    return conditions[-1] if conditions else None


def markdown(tables: list[Table], models: list[str], metrics: tuple[str, ...]) -> str:
    """Every table as a Markdown section."""
    header = _header(models, metrics)
    parts = []
    for table in tables:
        lines = [f"### {table.dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table.rows:
            cells = row_cells(row, models, metrics)
            if row.kind != "condition":
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _json_number(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def results_document(tables: list[Table], run: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of a run: its settings (`run`) and every table (NaN as null)."""
    return {
        **run,
        "tables": [
            {
                "dataset": table.dataset,
                "rows": [
                    {
                        "label": row.label,
                        "kind": row.kind,
                        "images": row.images,
                        "objects": row.objects,
                        "values": {
                            model: {metric: _json_number(v) for metric, v in values.items()}
                            for model, values in row.values.items()
                        },
                    }
                    for row in table.rows
                ],
            }
            for table in tables
        ],
    }


def write_charts(tables: list[Table], models: list[str], metric: str, folder: Path) -> list[Path]:
    """One PNG bar chart per table: `metric` per row, one bar per model. Needs matplotlib
    (ImportError otherwise)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    for table in tables:
        figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(table.rows) * len(models)), 4.0))
        width = 0.8 / len(models)
        for index, model in enumerate(models):
            positions = [i + (index - (len(models) - 1) / 2) * width for i in range(len(table.rows))]
            axes.bar(positions, [row.values[model][metric] for row in table.rows], width, label=model)
        axes.set_xticks(range(len(table.rows)), [row.label for row in table.rows], rotation=45, ha="right")
        axes.set_ylabel(METRIC_LABELS[metric])
        axes.set_title(table.dataset)
        axes.legend()
        figure.tight_layout()
        path = folder / f"{table.dataset}_{metric}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
        plt.close(figure)
        written.append(path)
    return written

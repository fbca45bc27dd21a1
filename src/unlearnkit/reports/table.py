"""The comparison table of a set of runs: printed with rich, written as Markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

COLUMNS = [
    ("method", "method", None),
    ("forget_quality", "forget quality ↑", "sci"),
    ("model_utility", "model utility ↑", "3f"),
    ("forget_rouge", "forget ROUGE ↓", "3f"),
    ("forget_keyword_accuracy", "keyword acc ↓", "3f"),
    ("privleak", "privleak →0", "1f"),
    ("seconds", "unlearn time (s)", "1f"),
]


def comparison_row(name: str, summary: dict, seconds: float | None = None) -> dict:
    row = {"method": name}
    for key, _, _ in COLUMNS[1:]:
        row[key] = summary.get(key)
    row["seconds"] = seconds
    return row


def _fmt(value, style) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if style is None:
        return str(value)
    if style == "sci":
        return f"{value:.2e}"
    return format(value, "." + style)


def print_table(rows: Sequence[dict], title: str = "unlearnkit results", console: Console | None = None) -> None:
    table = Table(title=title)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="left" if header == "method" else "right")
    for row in rows:
        table.add_row(*[_fmt(row.get(key), style) for key, _, style in COLUMNS])
    (console or Console()).print(table)


def markdown_table(rows: Sequence[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k), s) for k, _, s in COLUMNS) + " |")
    return "\n".join(lines) + "\n"

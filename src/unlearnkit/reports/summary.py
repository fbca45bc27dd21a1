"""A printed summary of one evaluation result."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def print_summary(result: dict, console: Console | None = None) -> None:
    table = Table(title=f"{result.get('suite', '').upper()} — {result['model'].get('name')}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["summary"].items():
        if value is None:
            text = "–"
        elif isinstance(value, float) and (value != 0 and (abs(value) < 1e-3) or math.isnan(value)):
            text = f"{value:.3e}"
        elif isinstance(value, float):
            text = f"{value:.4f}"
        else:
            text = str(value)
        table.add_row(key, text)
    (console or Console()).print(table)

"""ALU's targets file: the protected subjects given as a JSON list instead of the forget split's subjects."""

from __future__ import annotations

import json
from pathlib import Path

from unlearnkit.data.targets import Target, as_target
from unlearnkit.errors import DataError


def load_targets_file(path: str | Path) -> list[Target]:
    """A JSON list of targets: names (strings) or {name, aliases, description, facts} objects."""
    path = Path(path).expanduser()
    shape = 'a JSON list such as ["Ann Lee", {"name": "Bo Chen", "aliases": ["Bo"]}]'
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"targets file '{path}' does not exist: give the path of {shape}") from None
    except IsADirectoryError:
        raise DataError(f"targets file '{path}' is a directory: give the path of {shape}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"targets file '{path}' is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as "
                        "UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"targets file '{path}' is not valid JSON ({exc.msg} at line {exc.lineno} column "
                        f"{exc.colno}): fix it; it must hold {shape}") from exc
    if isinstance(data, dict) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, list) or not data:
        raise DataError(f"targets file '{path}' must hold a non-empty list of targets: {shape}")
    targets = []
    for i, item in enumerate(data):
        try:
            targets.append(as_target(item))
        except DataError as exc:
            raise DataError(f"targets file '{path}' item {i}: {exc}") from exc
    return targets

"""Load one split of a benchmark directory in the Hugging Face export format.

A split ``NAME`` is any of ``root/NAME.jsonl``, ``root/NAME.json`` (a JSON list
or JSON Lines), ``root/NAME.parquet``, or Parquet shards in ``root/data/NAME-*.parquet``
or ``root/NAME/*.parquet``. Field names follow TOFU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unlearnkit.data.records import QARecord
from unlearnkit.errors import DataError

KNOWN_FIELDS = {"question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question", "subject",
                "keywords"}


def _split_files(root: Path, name: str) -> list[Path]:
    for candidate in (root / f"{name}.jsonl", root / f"{name}.json", root / f"{name}.parquet"):
        if candidate.is_file():
            return [candidate]
    shards = sorted((root / "data").glob(f"{name}-*.parquet")) + sorted((root / name).glob("*.parquet"))
    return shards


def available_splits(root: str | Path) -> list[str]:
    root = Path(root)
    names = {p.stem for p in root.glob("*.jsonl")} | {p.stem for p in root.glob("*.json") if p.name != "task.json"}
    names |= {p.stem for p in root.glob("*.parquet")}
    names |= {p.name.split("-")[0] for p in (root / "data").glob("*.parquet")} if (root / "data").is_dir() else set()
    names |= {p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet"))} if root.is_dir() else set()
    return sorted(names)


def _read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(location, row) pairs; location names the file and line/record for errors."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path} is not a readable Parquet file ({exc}); re-export the split") from exc
        return [(f"{path} record {i}", row) for i, row in enumerate(rows)]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the file or export it "
                            "again as JSON Lines") from exc
        return [(f"{path} record {i}", row) for i, row in enumerate(rows)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path} line {lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {lineno} is not valid JSON ({exc.msg}): each line must hold one "
                            "JSON object") from exc
    return out


def _record(location: str, row: Any) -> QARecord:
    if not isinstance(row, dict):
        raise DataError(f"{location}: expected a JSON object with 'question' and 'answer', got {type(row).__name__}")
    for field in ("question", "answer"):
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            what = "is missing" if field not in row else "must be a non-empty string"
            raise DataError(f"{location}: field '{field}' {what}; every record needs 'question' and 'answer' "
                            "(TOFU field names)")
    perturbed = row.get("perturbed_answer") or ()
    if isinstance(perturbed, str):
        perturbed = (perturbed,)
    if not all(isinstance(p, str) for p in perturbed):
        raise DataError(f"{location}: 'perturbed_answer' must be a string or a list of strings")
    keywords = row.get("keywords") or ()
    if isinstance(keywords, str):
        keywords = (keywords,)
    return QARecord(
        question=row["question"],
        answer=row["answer"],
        paraphrased_answer=row.get("paraphrased_answer"),
        perturbed_answers=tuple(perturbed),
        paraphrased_question=row.get("paraphrased_question"),
        subject=row.get("subject"),
        keywords=tuple(keywords),
        meta={k: v for k, v in row.items() if k not in KNOWN_FIELDS},
    )


def load_split(root: str | Path, name: str, limit: int | None = None) -> list[QARecord]:
    """The records of split ``name`` under ``root`` (the first ``limit`` if given)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data directory '{root}' does not exist: give a directory of .jsonl/.json/.parquet "
                        "splits, or 'builtin' for the built-in benchmark")
    files = _split_files(root, name)
    if not files:
        known = ", ".join(available_splits(root)) or "none"
        raise DataError(f"unknown split '{name}' in {root}: available splits are {known}")
    records = [_record(loc, row) for path in files for loc, row in _read_rows(path)]
    if not records:
        raise DataError(f"split '{name}' ({files[0]}) is empty: it must hold at least one record")
    return records[:limit] if limit is not None else records

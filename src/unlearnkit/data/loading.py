"""Load one split of a benchmark directory in the Hugging Face export format.

A split ``NAME`` is any of ``root/NAME.jsonl``, ``root/NAME.json`` (a JSON list
or JSON Lines), ``root/NAME.parquet``, or Parquet shards in ``root/data/NAME-*.parquet``
or ``root/NAME/*.parquet``. Field names follow TOFU: ``question``, ``answer``,
``paraphrased_answer``, ``perturbed_answer`` (a list, or one string),
``paraphrased_question``, ``subject``, ``keywords``; any other field (``option1``..
``option4``, ...) is kept in ``QARecord.meta``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from unlearnkit.data.records import QARecord
from unlearnkit.errors import DataError

KNOWN_FIELDS = {"question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question", "subject",
                "keywords"}
OPTIONAL_TEXT_FIELDS = ("paraphrased_answer", "paraphrased_question", "subject")
NOT_SPLITS = {"task"}  # root/task.json names the roles of the splits; it is not a split
_SHARD = re.compile(r"^(?P<name>.+?)-\d+(?:-of-\d+)?$")  # HF shard names: NAME-00000-of-00002


class UnknownSplitError(DataError):
    """No file of that split name under the data directory."""


def _split_files(root: Path, name: str) -> list[Path]:
    for candidate in (root / f"{name}.jsonl", root / f"{name}.json", root / f"{name}.parquet"):
        if candidate.is_file():
            return [candidate]
    shards = [p for p in sorted((root / "data").glob(f"{glob_escape(name)}-*.parquet"))
              if (m := _SHARD.match(p.stem)) and m["name"] == name]
    return shards + sorted((root / name).glob("*.parquet"))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def available_splits(root: str | Path) -> list[str]:
    """The split names found under ``root`` (every layout ``load_split`` reads)."""
    root = Path(root)
    if not root.is_dir():
        return []
    names = {p.stem for ext in ("jsonl", "json", "parquet") for p in root.glob(f"*.{ext}") if p.is_file()}
    names -= NOT_SPLITS
    if (root / "data").is_dir():
        names |= {m["name"] for p in (root / "data").glob("*.parquet") if (m := _SHARD.match(p.stem))}
    names |= {p.name for p in root.iterdir() if p.is_dir() and p.name != "data" and any(p.glob("*.parquet"))}
    return sorted(n for n in names if not n.startswith("."))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} on line {line}, byte {exc.start}): save it as UTF-8 "
                        "JSON Lines") from exc


def read_rows(path: Path) -> list[tuple[str, Any]]:
    """(location, row) pairs; the location names the file and line/record for error messages."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path} is not a readable Parquet file ({exc}): re-export the split") from exc
        return [(f"{path} record {i}", row) for i, row in enumerate(rows)]
    text = _read_text(path)
    if path.suffix == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith("["):  # meant as one JSON list: report where it breaks
                raise DataError(f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}): fix "
                                "the file, or export the split again as JSON Lines") from exc
            whole = None  # JSON Lines in a .json file: read below, line by line
        if isinstance(whole, list):
            return [(f"{path} record {i}", row) for i, row in enumerate(whole)]
        if isinstance(whole, dict) and whole:
            return [(f"{path} record 0", whole)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}): each line "
                            "must hold one JSON object; fix or delete that line") from exc
        out.append((f"{path} line {lineno} (record {len(out)})", row))
    return out


def _strings(location: str, field: str, value: Any) -> tuple[str, ...]:
    """A string or a list of strings as a tuple; anything else is an error."""
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in items):
        raise DataError(f"{location}: field '{field}' must be a non-empty string or a list of non-empty strings "
                        f"(got {value!r:.80}); fix that record")
    return tuple(items)


MAX_FIELD_CHARS = 200_000  # about 50k tokens: beyond the context of any model unlearnkit scores


def _check_length(location: str, row: dict) -> None:
    for field, value in row.items():
        values = value if isinstance(value, list) else [value]
        longest = max((len(v) for v in values if isinstance(v, str)), default=0)
        if longest > MAX_FIELD_CHARS:
            raise DataError(f"{location}: field '{field}' holds {longest:,} characters, more than the "
                            f"{MAX_FIELD_CHARS:,} a record may hold (far beyond any model's context): split or "
                            "shorten that record")


def _record(location: str, row: Any) -> QARecord:
    if not isinstance(row, dict):
        raise DataError(f"{location}: expected a JSON object with 'question' and 'answer', got "
                        f"{type(row).__name__}; each record must be an object with TOFU field names")
    for field in ("question", "answer"):
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            what = "is missing" if field not in row else f"must be a non-empty string (got {value!r:.40})"
            raise DataError(f"{location}: field '{field}' {what}; every record needs a non-empty 'question' and "
                            "'answer' (TOFU field names): fix the record or rename its fields")
    _check_length(location, row)
    for field in OPTIONAL_TEXT_FIELDS:
        value = row.get(field)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{location}: field '{field}' must be a string (got {type(value).__name__}); fix that "
                            "record or drop the field")
    return QARecord(
        question=row["question"],
        answer=row["answer"],
        paraphrased_answer=row.get("paraphrased_answer"),
        perturbed_answers=_strings(location, "perturbed_answer", row.get("perturbed_answer")),
        paraphrased_question=row.get("paraphrased_question"),
        subject=row.get("subject"),
        keywords=_strings(location, "keywords", row.get("keywords")),
        meta={k: v for k, v in row.items() if k not in KNOWN_FIELDS},
    )


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data directory '{root}' does not exist: give a directory of .jsonl/.json/.parquet "
                        "splits, or 'builtin' for the built-in benchmark")
    if not root.is_dir():
        raise DataError(f"'{root}' is a file, not a data directory: give the directory that holds the split files")
    return root


def read_split(root: str | Path, name: str, limit: int | None = None, *, allow_empty: bool = False
               ) -> list[QARecord]:
    """``load_split`` that can also return an empty list (callers give their own error)."""
    root = _check_root(root)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise DataError(f"limit must be a non-negative whole number (got {limit!r}); leave it out to load every "
                        "record")
    files = _split_files(root, name)
    if not files:
        known = ", ".join(available_splits(root)) or "none (no .jsonl/.json/.parquet files there)"
        raise UnknownSplitError(f"unknown split '{name}' in {root}: available splits are {known}; pick one of them")
    records = [_record(loc, row) for path in files for loc, row in read_rows(path)]
    if not records and not allow_empty:
        where = files[0] if len(files) == 1 else f"{len(files)} shards in {files[0].parent}"
        raise DataError(f"split '{name}' ({where}) is empty: it must hold at least one record; fill the file or "
                        "pick another split")
    return records[:limit] if limit is not None else records


def load_split(root: str | Path, name: str, limit: int | None = None) -> list[QARecord]:
    """The records of split ``name`` under ``root``, in file order (the first ``limit`` if given).

    Raises ``DataError`` naming the file, line/record and field for every problem.
    """
    return read_split(root, name, limit)

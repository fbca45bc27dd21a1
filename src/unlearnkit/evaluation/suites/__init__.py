"""Evaluation suites beyond TOFU: WMDP, MMLU, MUSE, WPU and PKU-SafeRLHF (docs/metrics.md).

One entry point, ``run_suite(name, model, data_path, **options)`` (``registry.py``), returns a
result dict shaped like the TOFU suite's: ``{"suite", "model", "data", "config", "summary",
"per_example"}`` with a flat ``summary`` of numbers. The suite modules are imported lazily;
this package module holds only the small helpers they share (file lookup, row reading,
option checks), so importing it does not pull in torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError, DataError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
_SHARD = re.compile(r"^(?P<name>.+?)-\d+(?:-of-\d+)?$")  # HF shard names: NAME-00000-of-00002


# -- files ---------------------------------------------------------------------------------
def existing_path(path: str | Path, what: str) -> Path:
    """``path`` as a Path; DataError naming ``what`` it should be when it does not exist."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{what} '{p}' does not exist: give a .jsonl/.json/.parquet file or a directory holding them")
    return p


def data_files(path: str | Path, what: str, suffixes: Sequence[str] = DATA_SUFFIXES) -> list[Path]:
    """A data file itself, or every data file under a directory (recursively, sorted)."""
    p = existing_path(path, what)
    if p.is_file():
        if p.suffix not in suffixes:
            raise DataError(f"{what} '{p}' has suffix '{p.suffix}': expected one of {', '.join(suffixes)}")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes and not f.name.startswith("."))
    if not files:
        raise DataError(f"{what} directory '{p}' holds no {'/'.join(suffixes)} files: export the data there")
    return files


def find_split_files(root: Path, name: str, subdirs: Sequence[str] = ("",)) -> list[Path]:
    """The files of split ``name`` in the first of ``root/subdir`` that has it.

    Layouts: ``NAME.jsonl|json|parquet``, HF shards ``NAME-00000-of-00001.parquet`` (also under
    ``data/``), and a directory ``NAME/`` of Parquet shards (``NAME/train-00000-of-00001.parquet``).
    """
    for sub in subdirs:
        base = root / sub if sub else root
        if not base.is_dir():
            continue
        for suffix in DATA_SUFFIXES:
            candidate = base / f"{name}{suffix}"
            if candidate.is_file():
                return [candidate]
        shards = [p for folder in (base, base / "data") for p in sorted(folder.glob("*.parquet"))
                  if (m := _SHARD.match(p.stem)) and m["name"] == name]
        if (base / name).is_dir():
            shards += sorted(p for p in (base / name).glob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
        if shards:
            return shards
    return []


def read_rows(path: Path) -> list[tuple[str, Any]]:
    """(location, row) pairs of a .jsonl/.json/.parquet file; DataError naming the line on bad JSON."""
    from unlearnkit.data.loading import read_rows

    return read_rows(path)


def rows_of(files: Iterable[Path]) -> list[tuple[str, Any]]:
    return [pair for path in files for pair in read_rows(path)]


def require_text(location: str, row: Any, field: str, expected: str) -> str:
    """``row[field]`` as a non-empty string, or a DataError naming the field and the expected schema."""
    if not isinstance(row, dict):
        raise DataError(f"{location}: expected a JSON object with fields {expected}, got {type(row).__name__}")
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        what = "is missing" if field not in row else f"must be a non-empty string (got {value!r:.60})"
        have = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(f"{location}: field '{field}' {what}; expected fields {expected} (this record has: {have}): "
                        "fix the record or rename its fields")
    return value


# -- options (a suite's own options are declared with unlearnkit.options; these check helpers' arguments) --
def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"option {name} must be one of {', '.join(map(repr, choices))} (got {value!r})")
    return value


def as_name_list(name: str, value: Any) -> list[str] | None:
    """None, a comma-separated string or a list of strings, as a list."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise ConfigError(f"option {name} must be a name, a comma-separated string or a list of names "
                          f"(got {value!r})")
    if not items:
        raise ConfigError(f"option {name} is empty: give at least one name or leave it out")
    return items


def load_reference(reference: Any) -> dict | None:
    """A reference result: a dict, or the path of a result JSON file."""
    if reference is None or isinstance(reference, dict):
        return reference
    if isinstance(reference, (str, Path)):
        path = Path(reference).expanduser()
        if not path.is_file():
            raise ConfigError(f"reference result '{path}' does not exist: give the retain model's result JSON of "
                              "the same suite")
        from unlearnkit.io import read_json

        return read_json(path)
    raise ConfigError(f"reference must be a result dict or the path of a result JSON file (got "
                      f"{type(reference).__name__})")


# -- models --------------------------------------------------------------------------------
def hf_backend(model: Any):
    """The ``HFLanguageModel`` under ``model`` (itself, or a guard's ``base`` chain), else None."""
    from unlearnkit.models.hf import HFLanguageModel

    from unlearnkit.models.base import chain

    return next((m for m in chain(model) if isinstance(m, HFLanguageModel)), None)


def appends_eos(model: Any) -> bool:
    """Whether ``model.score`` appends an end-of-sequence token to each answer (HF models with add_eos)."""
    hf = hf_backend(model)
    return bool(hf is not None and hf.add_eos and hf.tokenizer.eos_token_id is not None)


def drop_last_token(scores):
    """The same ``AnswerScores`` without its final token (the EOS that ``score`` appended)."""
    return scores.without_last()


# -- results -------------------------------------------------------------------------------
def mean(values: Iterable[float]) -> float:
    vals = [float(v) for v in values]
    return float(sum(vals) / len(vals)) if vals else float("nan")


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def make_result(suite: str, model: Any, data: dict, config: dict, summary: dict, per_example: dict) -> dict:
    return {"suite": suite, "model": model.describe(), "data": data, "config": config, "summary": summary,
            "per_example": per_example}


from unlearnkit.evaluation.suites.registry import SUITES, run_suite, suite_names, suite_options  # noqa: E402

__all__ = ["SUITES", "run_suite", "suite_names", "suite_options"]

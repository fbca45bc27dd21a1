"""The roles of splits in one unlearning task, and loading them with validation.

A benchmark directory may hold ``task.json`` whose keys are the ``TaskSplits``
field names (the built-in generator writes one, with an extra ``generator`` key);
without it the directory is read as TOFU (``forget10`` / ``retain90`` / ...).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from unlearnkit.data.loading import UnknownSplitError, available_splits, read_split
from unlearnkit.data.records import QARecord
from unlearnkit.errors import ConfigError, DataError

TOFU_FORGET = {"forget01": ("retain99", "holdout01"), "forget05": ("retain95", "holdout05"),
               "forget10": ("retain90", "holdout10")}
TASK_FILE = "task.json"
TASK_EXTRA_KEYS = {"generator", "description"}  # allowed in task.json besides the TaskSplits fields


@dataclass(frozen=True)
class TaskSplits:
    """Which split plays which role (TOFU names by default)."""

    forget: str = "forget10"
    retain: str = "retain90"
    holdout: str | None = "holdout10"
    forget_eval: str = "forget10_perturbed"
    retain_eval: str = "retain_perturbed"
    general_evals: tuple[str, ...] = ("real_authors_perturbed", "world_facts_perturbed")
    full: str | None = "full"

    @classmethod
    def tofu(cls, forget: str = "forget10") -> TaskSplits:
        """TOFU's roles for ``forget01`` / ``forget05`` / ``forget10`` (retain, holdout and eval follow)."""
        if forget not in TOFU_FORGET:
            raise DataError(f"unknown TOFU forget split '{forget}': choose one of {', '.join(TOFU_FORGET)}")
        retain, holdout = TOFU_FORGET[forget]
        return cls(forget=forget, retain=retain, holdout=holdout, forget_eval=f"{forget}_perturbed")

    @classmethod
    def from_dir(cls, root: str | Path, forget: str | None = None) -> TaskSplits:
        """``root/task.json`` if present (an explicit ``forget`` overrides its forget split), else TOFU's layout."""
        path = Path(root).expanduser() / TASK_FILE
        if path.is_file():
            splits = cls.from_json(_read_task_json(path), source=str(path))
            return replace(splits, forget=forget) if forget else splits
        forget = forget or "forget10"
        if forget not in TOFU_FORGET:
            raise DataError(f"forget split '{forget}' is not a TOFU forget split and {path} does not exist: use one "
                            f"of {', '.join(TOFU_FORGET)}, or write {path} naming the splits of each role "
                            f"(keys: {', '.join(f.name for f in fields(cls))})")
        return cls.tofu(forget)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "task.json") -> TaskSplits:
        """Roles from a ``task.json`` mapping; unknown keys and wrong types are errors."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names) - TASK_EXTRA_KEYS)
        if unknown:
            raise DataError(f"{source}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(names)} "
                            f"(plus {', '.join(sorted(TASK_EXTRA_KEYS))}): fix the spelling")
        values: dict[str, Any] = {}
        for name in names:
            if name not in data:
                continue
            value = data[name]
            if name == "general_evals":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise DataError(f"{source}: 'general_evals' must be a list of split names (got {value!r}); "
                                    "use [] for none")
                value = tuple(value)
            elif value is None and name in ("holdout", "full"):
                pass
            elif not isinstance(value, str) or not value:
                optional = " or null" if name in ("holdout", "full") else ""
                raise DataError(f"{source}: '{name}' must be a split name{optional} (got {value!r}); fix that key")
            values[name] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _read_task_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): fix it, or delete it to use TOFU's split names") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object mapping roles to split names (got "
                        f"{type(data).__name__}): fix it, or delete it to use TOFU's split names")
    return data


@dataclass
class TaskData:
    """Every split of one unlearning task, loaded and validated."""

    root: Path
    splits: TaskSplits
    forget: list[QARecord]
    retain: list[QARecord]
    holdout: list[QARecord]
    forget_eval: list[QARecord]
    retain_eval: list[QARecord]
    general_evals: dict[str, list[QARecord]]


def normalise_question(text: str) -> str:
    """Question text for overlap checks: whitespace collapsed, case folded."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def overlap_key(text: str) -> str:
    """Question text as the forget/retain overlap check compares it: NFKC, case folded, punctuation and spacing
    ignored (a no-break space or a dropped '?' must not hide a forget question in the retain split)."""
    return " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).split())


_OPTION = {"forget": "--forget", "retain": "--retain"}


def _load_role(root: Path, role: str, name: str, limit: int | None = None) -> list[QARecord]:
    """Load the split playing ``role``; errors say which role and how to pick another split."""
    try:
        records = read_split(root, name, limit, allow_empty=True)
    except UnknownSplitError as exc:
        known = ", ".join(available_splits(root)) or "none (it holds no .jsonl, .json or .parquet split files)"
        how = f"pick another split with {_OPTION[role]}" if role in _OPTION else \
            f"add it, or name another split for '{role}' in {root / TASK_FILE}"
        if role == "holdout":
            how += " (or set \"holdout\": null there: the MIA metrics then have no holdout set)"
        raise DataError(f"{role} split '{name}' not found in {root}: available splits are {known}; {how}") from exc
    if not records:
        how = f"pick another split with {_OPTION[role]}" if role in _OPTION else \
            f"fill it, or name another split for '{role}' in {root / TASK_FILE}"
        raise DataError(f"{role} split '{name}' in {root} has 0 records: the {role} set must not be empty; {how}")
    return records


def _check_truth_ratio_fields(records: list[QARecord], role: str, split: str, need_paraphrase: bool) -> None:
    """The truth ratio needs a paraphrased answer (forget/retain evals) and at least one perturbed answer."""
    checks = [("perturbed_answer", lambda r: bool(r.perturbed_answers))]
    if need_paraphrase:
        checks.insert(0, ("paraphrased_answer", lambda r: bool(r.paraphrased_answer)))
    for field, ok in checks:
        missing = [i for i, r in enumerate(records) if not ok(r)]
        if missing:
            raise DataError(f"{role} split '{split}': {len(missing)} of {len(records)} records have no '{field}' "
                            f"(first: record {missing[0]}, {records[missing[0]].question!r:.80}); the truth ratio "
                            f"needs it: use a *_perturbed split for '{role}' (TOFU: forgetXX_perturbed, "
                            "retain_perturbed, real_authors_perturbed, world_facts_perturbed)")


def load_task(root: str | Path, forget: str | None = None, retain: str | None = None,
              eval_limit: int | None = None) -> TaskData:
    """Load every split of a task and validate it.

    ``forget`` / ``retain`` override the split names of those roles (``task.json``
    or TOFU's defaults otherwise). ``eval_limit`` keeps the first N records of each
    evaluation split (never of the forget or retain sets). Raises ``DataError`` on
    an empty forget/retain set, on questions in both forget and retain, and on
    evaluation splits without the fields the truth ratio needs.
    """
    if eval_limit is not None and (isinstance(eval_limit, bool) or not isinstance(eval_limit, int)
                                   or eval_limit < 1):
        raise ConfigError(f"eval_limit must be a whole number >= 1 (got {eval_limit!r}); leave it out to evaluate "
                          "every record")
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        raise DataError(f"data directory '{root}' {what}: give a benchmark directory (TOFU-style .jsonl/.json/"
                        ".parquet splits) or 'builtin' for the built-in benchmark")
    splits = TaskSplits.from_dir(root, forget)
    if retain:
        splits = replace(splits, retain=retain)
    forget_records = _load_role(root, "forget", splits.forget)
    retain_records = _load_role(root, "retain", splits.retain)
    forget_keys = {overlap_key(r.question) for r in forget_records}
    overlap = [r for r in retain_records if overlap_key(r.question) in forget_keys]
    if overlap:
        raise DataError(f"{len(overlap)} question(s) are in both the forget split '{splits.forget}' and the retain "
                        f"split '{splits.retain}' in {root} (e.g. {overlap[0].question!r}): remove them from one of "
                        "the two splits, or pick non-overlapping splits with --forget/--retain")
    holdout = _load_role(root, "holdout", splits.holdout) if splits.holdout else []
    forget_eval = _load_role(root, "forget_eval", splits.forget_eval, eval_limit)
    retain_eval = _load_role(root, "retain_eval", splits.retain_eval, eval_limit)
    _check_truth_ratio_fields(forget_eval, "forget_eval", splits.forget_eval, need_paraphrase=True)
    _check_truth_ratio_fields(retain_eval, "retain_eval", splits.retain_eval, need_paraphrase=True)
    general = {}
    for name in splits.general_evals:
        general[name] = _load_role(root, "general_evals", name, eval_limit)
        _check_truth_ratio_fields(general[name], "general_evals", name, need_paraphrase=False)
    return TaskData(root=root, splits=splits, forget=forget_records, retain=retain_records, holdout=holdout,
                    forget_eval=forget_eval, retain_eval=retain_eval, general_evals=general)

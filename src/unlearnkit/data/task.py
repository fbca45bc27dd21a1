"""The roles of splits in one unlearning task, and loading them with validation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

from unlearnkit.data.loading import load_split
from unlearnkit.data.records import QARecord
from unlearnkit.errors import DataError

TOFU_FORGET = {"forget01": ("retain99", "holdout01"), "forget05": ("retain95", "holdout05"),
               "forget10": ("retain90", "holdout10")}
TASK_FILE = "task.json"


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
        if forget not in TOFU_FORGET:
            raise DataError(f"unknown TOFU forget split '{forget}': choose one of {', '.join(TOFU_FORGET)}")
        retain, holdout = TOFU_FORGET[forget]
        return cls(forget=forget, retain=retain, holdout=holdout, forget_eval=f"{forget}_perturbed")

    @classmethod
    def from_dir(cls, root: str | Path, forget: str | None = None) -> TaskSplits:
        """``root/task.json`` if present (an explicit ``forget`` overrides it), else TOFU's layout."""
        path = Path(root) / TASK_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} is not valid JSON ({exc.msg}); fix or delete it") from exc
            names = {f.name for f in fields(cls)}
            values = {k: (tuple(v) if k == "general_evals" else v) for k, v in data.items() if k in names}
            splits = cls(**values)
            if forget:
                splits = cls(**{**values, "forget": forget})
            return splits
        return cls.tofu(forget or "forget10")


@dataclass
class TaskData:
    root: Path
    splits: TaskSplits
    forget: list[QARecord]
    retain: list[QARecord]
    holdout: list[QARecord]
    forget_eval: list[QARecord]
    retain_eval: list[QARecord]
    general_evals: dict[str, list[QARecord]]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _check_truth_ratio_fields(records: list[QARecord], split: str, need_paraphrase: bool) -> None:
    for i, r in enumerate(records):
        if need_paraphrase and not r.paraphrased_answer:
            raise DataError(f"split '{split}' record {i} has no 'paraphrased_answer': the truth ratio needs it; "
                            "use the *_perturbed split for evaluation")
        if not r.perturbed_answers:
            raise DataError(f"split '{split}' record {i} has no 'perturbed_answer': the truth ratio needs at least "
                            "one; use the *_perturbed split for evaluation")


def load_task(root: str | Path, forget: str | None = None, retain: str | None = None,
              eval_limit: int | None = None) -> TaskData:
    """Load every split of a task and validate it.

    ``eval_limit`` keeps the first N records of each evaluation split (never of
    the forget or retain sets).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data directory '{root}' does not exist: give a benchmark directory or 'builtin'")
    splits = TaskSplits.from_dir(root, forget)
    if retain:
        splits = TaskSplits(**{**{f.name: getattr(splits, f.name) for f in fields(splits)}, "retain": retain})
    forget_records = load_split(root, splits.forget)
    retain_records = load_split(root, splits.retain)
    forget_keys = {_norm(r.question): r for r in forget_records}
    overlap = [r for r in retain_records if _norm(r.question) in forget_keys]
    if overlap:
        raise DataError(f"{len(overlap)} question(s) are in both the forget split '{splits.forget}' and the retain "
                        f"split '{splits.retain}' (e.g. {overlap[0].question!r}): remove them from one of the two")
    holdout = load_split(root, splits.holdout) if splits.holdout else []
    forget_eval = load_split(root, splits.forget_eval, eval_limit)
    retain_eval = load_split(root, splits.retain_eval, eval_limit)
    _check_truth_ratio_fields(forget_eval, splits.forget_eval, need_paraphrase=True)
    _check_truth_ratio_fields(retain_eval, splits.retain_eval, need_paraphrase=True)
    general = {}
    for name in splits.general_evals:
        general[name] = load_split(root, name, eval_limit)
        _check_truth_ratio_fields(general[name], name, need_paraphrase=False)
    return TaskData(root=root, splits=splits, forget=forget_records, retain=retain_records, holdout=holdout,
                    forget_eval=forget_eval, retain_eval=retain_eval, general_evals=general)

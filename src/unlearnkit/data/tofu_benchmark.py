"""TOFU laid out for one unlearning benchmark: what the target and retain models learn, and what is evaluated.

TOFU's records come in blocks of 20 per fictitious author (``full``, in order). Two layouts:

* **authors** (the default, sized for a CPU): the target model learns the forget split's authors plus the
  authors whose questions make up ``retain_perturbed`` (20 authors, 400 pairs); the retain model learns those
  retain authors only. The evaluation is TOFU's own (forget*_perturbed, retain_perturbed, real_authors,
  world_facts, holdout*), so forget quality keeps the published resolution (40 truth ratios on forget01).
* **whole**: the published protocol: the target learns ``full`` (4000 pairs), the retain model ``retain99/95/90``.

Each record gets its author as ``subject`` (the capitalised name most of the block's questions spell), which
the guards (ECO, ALU, prompting) and the keyword metrics use.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from unlearnkit.data.loading import read_split
from unlearnkit.data.records import QARecord
from unlearnkit.data.task import TOFU_FORGET, TaskData, load_task, normalise_question
from unlearnkit.errors import DataError

AUTHOR_BLOCK = 20  # TOFU: 20 question/answer pairs per author, in order
LAYOUTS = ("authors", "whole")
RETAIN_AUTHORS_SPLIT = "retain_perturbed_authors"  # the name the authors layout gives its retain set
_NAME = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:[A-Z][\w'’.-]*|al|bin|de|del|da|van|von|le|la)){1,4}")
_NOT_NAME_START = {"What", "Who", "Which", "How", "Has", "Have", "Does", "Did", "Is", "Are", "Can", "Could",
                   "In", "When", "Where", "Why", "The", "Was", "Were", "Author", "Please", "Apart", "Besides"}


@dataclass
class TofuBenchmark:
    """The task every method and metric sees, and the fine-tuning sets of the target and retain models."""

    task: TaskData
    target_train: list[QARecord]
    retain_train: list[QARecord]
    layout: str
    forget_authors: list[str]
    retain_authors: list[str]

    def describe(self) -> dict:
        return {"layout": self.layout, "forget_split": self.task.splits.forget,
                "forget_authors": self.forget_authors, "retain_authors": len(self.retain_authors),
                "target_train": len(self.target_train), "retain_train": len(self.retain_train),
                "eval_sizes": {"forget": len(self.task.forget_eval), "retain": len(self.task.retain_eval),
                               "holdout": len(self.task.holdout),
                               **{k: len(v) for k, v in self.task.general_evals.items()}}}


def _candidates(text: str) -> list[str]:
    out = []
    for m in _NAME.finditer(text):
        words = m.group(0).rstrip(".'’").split()
        while words and words[0] in _NOT_NAME_START:
            words = words[1:]
        if len(words) >= 2:
            out.append(" ".join(w.removesuffix("'s").removesuffix("’s") for w in words))
    return out


def author_name(block: list[QARecord]) -> str:
    """The name most questions of one author's block spell (ties: the longer, then the first seen)."""
    counts: Counter[str] = Counter()
    for r in block:
        counts.update(set(_candidates(r.question)))
    if not counts:
        for r in block:
            counts.update(set(_candidates(r.answer)))
    if not counts:
        return ""
    best = max(counts.values())
    return max((n for n, c in counts.items() if c == best), key=len)


def _blocks(full: list[QARecord], root: Path) -> list[list[QARecord]]:
    if not full or len(full) % AUTHOR_BLOCK:
        raise DataError(f"split 'full' in {root} has {len(full)} records, not a multiple of {AUTHOR_BLOCK}: TOFU "
                        f"keeps {AUTHOR_BLOCK} pairs per author in order; use a complete TOFU copy, or --layout "
                        "whole with a task.json naming the splits")
    return [full[i:i + AUTHOR_BLOCK] for i in range(0, len(full), AUTHOR_BLOCK)]


def _with_subjects(records: list[QARecord], owner: dict[str, str]) -> list[QARecord]:
    return [r if r.subject or normalise_question(r.question) not in owner
            else replace(r, subject=owner[normalise_question(r.question)]) for r in records]


def load_tofu_benchmark(root: str | Path, forget: str = "forget01", layout: str = "authors") -> TofuBenchmark:
    """TOFU under ``root`` (the Hugging Face export: one .jsonl/.json/.parquet file per configuration)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown TOFU layout '{layout}': choose one of {', '.join(LAYOUTS)}")
    if forget not in TOFU_FORGET:
        raise DataError(f"unknown TOFU forget split '{forget}': choose one of {', '.join(TOFU_FORGET)}")
    root = Path(root).expanduser()
    task = load_task(root, forget)
    full = read_split(root, "full")
    blocks = _blocks(full, root)
    names = [author_name(b) or f"author {i}" for i, b in enumerate(blocks)]
    block_of: dict[str, int] = {}
    for i, b in enumerate(blocks):
        for r in b:
            block_of.setdefault(normalise_question(r.question), i)
    owner = {q: names[i] for q, i in block_of.items()}

    def authors_of(records: list[QARecord], role: str) -> list[int]:
        found = sorted({block_of[q] for r in records if (q := normalise_question(r.question)) in block_of})
        if not found:
            raise DataError(f"none of the {role} questions is in 'full' under {root}: the TOFU copy is incomplete "
                            "or mixed; use one complete export")
        return found

    forget_blocks = authors_of(task.forget, "forget")
    task = replace(task, forget=_with_subjects(task.forget, owner), retain=_with_subjects(task.retain, owner),
                   forget_eval=_with_subjects(task.forget_eval, owner),
                   retain_eval=_with_subjects(task.retain_eval, owner))
    if layout == "whole":
        return TofuBenchmark(task, [*_with_subjects(full, owner)], task.retain, layout,
                             [names[i] for i in forget_blocks],
                             sorted({names[i] for i in range(len(blocks)) if i not in forget_blocks}))
    retain_blocks = [i for i in authors_of(task.retain_eval, "retain_perturbed") if i not in forget_blocks]
    retain_train = _with_subjects([r for i in retain_blocks for r in blocks[i]], owner)
    forget_keys = {normalise_question(r.question) for r in task.forget}
    target_train = _with_subjects(sorted([*(r for i in retain_blocks for r in blocks[i]), *task.forget],
                                         key=lambda r: block_of.get(normalise_question(r.question), -1)), owner)
    missing = [r for r in task.forget if normalise_question(r.question) not in block_of]
    if missing or any(normalise_question(r.question) in forget_keys for r in retain_train):
        raise DataError(f"the forget split '{forget}' under {root} does not line up with 'full' (author blocks of "
                        f"{AUTHOR_BLOCK}): use one complete TOFU export")
    splits = replace(task.splits, retain=RETAIN_AUTHORS_SPLIT)
    task = replace(task, splits=splits, retain=retain_train)
    return TofuBenchmark(task, target_train, retain_train, layout, [names[i] for i in forget_blocks],
                         [names[i] for i in retain_blocks])


def evenly_spaced(records: list, n: int | None) -> list:
    """``n`` records spread evenly over the list (every author of a TOFU split is represented); all if None."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise DataError(f"a subset must keep at least 1 record (got {n})")
    return [records[(i * len(records)) // n] for i in range(n)]


def eval_subset(task: TaskData, n_retain: int | None, n_general: int | None) -> TaskData:
    """The same task with fewer retain/general evaluation records (the forget and holdout sets stay whole)."""
    return replace(task, retain_eval=evenly_spaced(task.retain_eval, n_retain),
                   general_evals={k: evenly_spaced(v, n_general) for k, v in task.general_evals.items()})

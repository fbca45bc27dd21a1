"""Targets, retain and holdout records for the scale sweep, from the built-in benchmark generator."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from unlearnkit.data.records import QARecord
from unlearnkit.errors import ConfigError


def group_by_subject(records: Sequence[QARecord]) -> dict[str, list[QARecord]]:
    out: dict[str, list[QARecord]] = {}
    for r in records:
        out.setdefault(r.subject or r.question, []).append(r)
    return out


def builtin_scale_data(n_targets: int, task=None, facts_per_person: int = 2, n_retain_people: int = 20,
                       seed: int = 0, work_dir: str | Path | None = None
                       ) -> tuple[dict[str, list[QARecord]], list[QARecord], list[QARecord]]:
    """Targets, retain and holdout records for the sweep from the built-in generator.

    With ``task`` (the benchmark the model was fine-tuned on), its forget people come first
    (the model knows them, so small sizes measure real forgetting) and its retain records
    are the retain set (known facts that must survive); generated people fill the
    remaining targets. Without ``task`` everything is generated. Holdout: the task's holdout
    split (people the model never saw), else the generator's holdout people.
    """
    import tempfile

    from unlearnkit.data import generate_benchmark, load_task

    known = group_by_subject(task.forget) if task is not None else {}
    retain = list(task.retain) if task is not None else []
    holdout = list(task.holdout or []) if task is not None else []
    extra = max(0, n_targets - len(known))
    n_retain = 0 if task is not None else n_retain_people
    root = Path(tempfile.mkdtemp(prefix="unlearnkit-scale-", dir=work_dir))
    generated: dict[str, list[QARecord]] = {}
    taken = {n.lower() for n in known} | {r.subject.lower() for r in retain if r.subject}
    if extra or n_retain:
        # generated people may share a name with someone the model already knows: make that many more
        spare = len(taken)
        generate_benchmark(root, n_people=extra + spare + max(n_retain, 1), n_forget=extra + spare,
                           n_holdout=2, facts_per_person=facts_per_person, seed=seed + 1000, n_general=2)
        gen_task = load_task(root)
        generated = group_by_subject(gen_task.forget)
        if task is None:
            retain, holdout = list(gen_task.retain), list(gen_task.holdout or [])
            taken |= {r.subject.lower() for r in retain + holdout if r.subject}
    by_person = dict(known)
    for name, recs in generated.items():
        if len(by_person) >= n_targets:
            break
        if name.lower() not in taken:
            by_person[name] = recs
    if len(by_person) < n_targets:
        raise ConfigError(f"the generator gave only {len(by_person)} distinct people for {n_targets} targets")
    return dict(list(by_person.items())[:n_targets]), retain, holdout

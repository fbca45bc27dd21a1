"""The built-in TOFU-style benchmark: fictitious people, generated from a seed.

Everything runs without external data: ``generate_benchmark`` writes JSON Lines
splits with TOFU's field names plus a ``task.json`` naming their roles, so the
same loaders and evaluation serve it and real TOFU alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from unlearnkit.data.records import QARecord
from unlearnkit.data.synthetic_facts import (ATTRIBUTE_ORDER, ATTRIBUTES, FIRST_NAMES, LAST_NAMES, REAL_AUTHORS,
                                             TEMPLATES, WORLD_FACTS)
from unlearnkit.data.task import TASK_FILE, TaskSplits
from unlearnkit.errors import ConfigError

N_PERTURBED = 5
MAX_PEOPLE = len(FIRST_NAMES) * len(LAST_NAMES)


def person_names(n: int, rng: random.Random) -> list[str]:
    pairs = [(f, last) for f in FIRST_NAMES for last in LAST_NAMES]
    rng.shuffle(pairs)
    return [f"{f} {last}" for f, last in pairs[:n]]


def person_facts(name: str, kinds: list[str], rng: random.Random, language: str = "en") -> list[QARecord]:
    """One record per attribute kind: question, answer, paraphrases and 5 perturbed answers."""
    records = []
    templates = TEMPLATES[language]
    for kind in kinds:
        pool = ATTRIBUTES[kind]
        value = rng.choice(pool)
        wrong = rng.sample([v for v in pool if v != value], N_PERTURBED)
        t = templates[kind]
        records.append(QARecord(
            question=t["q"][0].format(name=name),
            answer=t["a"][0].format(name=name, value=value),
            paraphrased_answer=t["a"][1].format(name=name, value=value),
            perturbed_answers=tuple(t["a"][0].format(name=name, value=w) for w in wrong),
            paraphrased_question=t["q"][1].format(name=name),
            subject=name,
            keywords=(value,),
            meta={"attribute": kind, "value": value, "language": language},
        ))
    return records


def _general(facts, n: int) -> list[QARecord]:
    return [QARecord(question=q, answer=a, perturbed_answers=tuple(p), keywords=(a,)) for q, a, p in facts[:n]]


def _write_jsonl(path: Path, records: list[QARecord]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")


def generate_benchmark(out_dir: str | Path, n_people: int = 10, n_forget: int = 2, n_holdout: int = 2,
                       facts_per_person: int = 4, seed: int = 0, n_general: int = 20) -> TaskSplits:
    """Write the benchmark to ``out_dir`` (atomically) and return its split roles.

    ``n_people`` people are in ``full`` (retain people first, the last
    ``n_forget`` are the forget set); ``n_holdout`` more people appear only in
    ``holdout`` (for membership inference).
    """
    if not 1 <= n_forget < n_people:
        raise ConfigError(f"n_forget must be between 1 and n_people - 1 (got {n_forget} of {n_people} people)")
    if n_people + n_holdout > MAX_PEOPLE:
        raise ConfigError(f"at most {MAX_PEOPLE} people can be generated (asked for {n_people + n_holdout})")
    if not 1 <= facts_per_person <= len(ATTRIBUTE_ORDER):
        raise ConfigError(f"facts_per_person must be between 1 and {len(ATTRIBUTE_ORDER)} (got {facts_per_person})")
    if n_holdout < 0:
        raise ConfigError(f"n_holdout must be >= 0 (got {n_holdout})")
    limit = min(len(REAL_AUTHORS), len(WORLD_FACTS))
    if not 1 <= n_general <= limit:
        raise ConfigError(f"n_general must be between 1 and {limit} (got {n_general})")
    rng = random.Random(seed)
    names = person_names(n_people + n_holdout, rng)
    kinds = ATTRIBUTE_ORDER[:facts_per_person]
    people = [person_facts(name, kinds, rng) for name in names]
    retain = [r for p in people[: n_people - n_forget] for r in p]
    forget = [r for p in people[n_people - n_forget: n_people] for r in p]
    holdout = [r for p in people[n_people:] for r in p]
    splits = TaskSplits(forget="forget", retain="retain", holdout="holdout" if holdout else None,
                        forget_eval="forget_perturbed", retain_eval="retain_perturbed",
                        general_evals=("real_authors_perturbed", "world_facts_perturbed"), full="full")
    files = {"full": retain + forget, "forget": forget, "retain": retain, "forget_perturbed": forget,
             "retain_perturbed": retain, "real_authors_perturbed": _general(REAL_AUTHORS, n_general),
             "world_facts_perturbed": _general(WORLD_FACTS, n_general)}
    if holdout:
        files["holdout"] = holdout
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, records in files.items():
            _write_jsonl(tmp / f"{name}.jsonl", records)
        task = {**asdict(splits), "generator": {"n_people": n_people, "n_forget": n_forget, "n_holdout": n_holdout,
                                                 "facts_per_person": facts_per_person, "seed": seed,
                                                 "n_general": n_general}}
        (tmp / TASK_FILE).write_text(json.dumps(task, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return splits


def builtin_benchmark_dir(**kwargs) -> Path:
    """The benchmark for these arguments, generated once into the cache and reused."""
    from unlearnkit.models.embedded import cache_root

    args = {"n_people": 10, "n_forget": 2, "n_holdout": 2, "facts_per_person": 4, "seed": 0, "n_general": 20,
            **kwargs}
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "benchmarks" / key
    if not (path / TASK_FILE).is_file():
        generate_benchmark(path, **args)
    return path

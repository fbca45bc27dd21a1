"""The built-in TOFU-style benchmark: fictitious people, generated from a seed.

Everything runs without external data: ``generate_benchmark`` writes JSON Lines
splits with TOFU's field names plus a ``task.json`` naming their roles, so the
same loaders and evaluation serve it and real TOFU alike.

Each fact has a question, an answer sentence holding the value, a paraphrased
answer (another template, same value), five perturbed answers (the paraphrase
template with five other values of the attribute: like TOFU, the truth ratio then
compares sentences that differ only in the fact), a paraphrased question, the
person as ``subject`` and the value as the only keyword.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from unlearnkit.data.records import QARecord
from unlearnkit.data.synthetic_facts import (ATTRIBUTE_ORDER, ATTRIBUTES, FIRST_NAMES, LAST_NAMES, REAL_AUTHORS,
                                             TEMPLATES, WORLD_FACTS, fill)
from unlearnkit.data.task import TASK_FILE, TaskSplits
from unlearnkit.paths import cache_root
from unlearnkit.errors import ConfigError

GENERATOR_VERSION = 2  # bump when the output for the same arguments changes (it keys the cache)
N_PERTURBED = 5
MAX_PEOPLE = len(FIRST_NAMES) * len(LAST_NAMES)
MAX_GENERAL = min(len(REAL_AUTHORS), len(WORLD_FACTS))
DEFAULTS = {"n_people": 10, "n_forget": 2, "n_holdout": 2, "facts_per_person": 4, "seed": 0, "n_general": 20}
SPLITS = TaskSplits(forget="forget", retain="retain", holdout="holdout", forget_eval="forget_perturbed",
                    retain_eval="retain_perturbed", general_evals=("real_authors_perturbed", "world_facts_perturbed"),
                    full="full")


def person_names(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct invented full names (first x last), in a seeded order."""
    pairs = [(f, last) for f in FIRST_NAMES for last in LAST_NAMES]
    rng.shuffle(pairs)
    return [f"{f} {last}" for f, last in pairs[:n]]


def _wrong_values(value: str, pool: list[str], rng: random.Random) -> list[str]:
    """N_PERTURBED other values; none contains the true one or is contained in it (keyword checks stay exact)."""
    low = value.lower()
    others = [v for v in pool if low not in v.lower() and v.lower() not in low]
    return rng.sample(others, N_PERTURBED)


def person_facts(name: str, kinds: list[str], rng: random.Random, language: str = "en") -> list[QARecord]:
    """One record per attribute kind: question, answer, paraphrases and 5 perturbed answers."""
    if language not in TEMPLATES:
        raise ConfigError(f"no benchmark templates for language '{language}': choose one of {', '.join(TEMPLATES)}")
    templates = TEMPLATES[language]
    records = []
    for kind in kinds:
        pool = ATTRIBUTES[kind]
        value = rng.choice(pool)
        wrong = _wrong_values(value, pool, rng)
        q, a = templates[kind]["q"], templates[kind]["a"]
        records.append(QARecord(
            question=fill(q[0], name, language=language),
            answer=fill(a[0], name, value, language),
            paraphrased_answer=fill(a[1], name, value, language),
            perturbed_answers=tuple(fill(a[1], name, w, language) for w in wrong),
            paraphrased_question=fill(q[1], name, language=language),
            subject=name,
            keywords=(value,),
            meta={"attribute": kind, "value": value, "language": language},
        ))
    return records


def general_records(facts, n: int) -> list[QARecord]:
    """The first ``n`` hand-written general-knowledge facts as records (answer plus 3 wrong answers)."""
    return [QARecord(question=q, answer=a, perturbed_answers=tuple(p), keywords=(a,)) for q, a, p in facts[:n]]


def _write_jsonl(path: Path, records: list[QARecord]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            fh.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number (got {value!r})")
    return value


def _check_args(n_people, n_forget, n_holdout, facts_per_person, seed, n_general) -> None:
    for name, value in dict(n_people=n_people, n_forget=n_forget, n_holdout=n_holdout,
                            facts_per_person=facts_per_person, seed=seed, n_general=n_general).items():
        _whole(name, value)
    if n_people < 2:
        raise ConfigError(f"n_people must be at least 2 (one to forget, one to retain); got {n_people}")
    if not 1 <= n_forget < n_people:
        raise ConfigError(f"n_forget must be between 1 and n_people - 1 = {n_people - 1} (got {n_forget} of "
                          f"{n_people} people): some people must stay in the retain set")
    if n_holdout < 0:
        raise ConfigError(f"n_holdout must be >= 0 (got {n_holdout}); use 0 for no holdout set")
    if n_people + n_holdout > MAX_PEOPLE:
        raise ConfigError(f"at most {MAX_PEOPLE} people can be generated (n_people + n_holdout = "
                          f"{n_people + n_holdout}): lower n_people or n_holdout")
    if not 1 <= facts_per_person <= len(ATTRIBUTE_ORDER):
        raise ConfigError(f"facts_per_person must be between 1 and {len(ATTRIBUTE_ORDER)} (got {facts_per_person}): "
                          f"the generator knows {len(ATTRIBUTE_ORDER)} kinds of fact ({', '.join(ATTRIBUTE_ORDER)})")
    if not 1 <= n_general <= MAX_GENERAL:
        raise ConfigError(f"n_general must be between 1 and {MAX_GENERAL} (got {n_general}): that many hand-written "
                          "general-knowledge questions exist per set")


def _prepare_out_dir(out_dir: Path) -> None:
    """Refuse to replace anything that is not an earlier generated benchmark."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file: give a directory path to write the benchmark to")
    if not any(out_dir.iterdir()):
        return
    try:
        task = json.loads((out_dir / TASK_FILE).read_text(encoding="utf-8"))
        generated = isinstance(task, dict) and "generator" in task
    except (OSError, ValueError):
        generated = False
    if not generated:
        raise ConfigError(f"{out_dir} already holds files that are not a generated benchmark: give a new or empty "
                          "directory (it would be replaced)")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``, replacing an earlier benchmark there."""
    try:
        tmp.rename(out_dir)  # works when out_dir is absent or an empty directory
        return
    except OSError:
        if not out_dir.exists():
            raise
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    old.rmdir()
    out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def generate_benchmark(out_dir: str | Path, n_people: int = 10, n_forget: int = 2, n_holdout: int = 2,
                       facts_per_person: int = 4, seed: int = 0, n_general: int = 20) -> TaskSplits:
    """Write the benchmark to ``out_dir`` (atomically) and return its split roles.

    ``n_people`` people are in ``full`` (retain people first, then the last
    ``n_forget``: the forget set); ``n_holdout`` more people appear only in
    ``holdout`` (for membership inference). Each person has ``facts_per_person``
    facts (1..8). The general sets hold ``n_general`` real questions each (1..MAX_GENERAL).
    The same arguments give the same bytes.
    """
    _check_args(n_people, n_forget, n_holdout, facts_per_person, seed, n_general)
    rng = random.Random(seed)
    names = person_names(n_people + n_holdout, rng)
    kinds = ATTRIBUTE_ORDER[:facts_per_person]
    people = [person_facts(name, kinds, rng) for name in names]
    retain = [r for p in people[: n_people - n_forget] for r in p]
    forget = [r for p in people[n_people - n_forget: n_people] for r in p]
    holdout = [r for p in people[n_people:] for r in p]
    splits = SPLITS if holdout else replace(SPLITS, holdout=None)
    files = {"full": retain + forget, "forget": forget, "retain": retain, "forget_perturbed": forget,
             "retain_perturbed": retain, "real_authors_perturbed": general_records(REAL_AUTHORS, n_general),
             "world_facts_perturbed": general_records(WORLD_FACTS, n_general)}
    if holdout:
        files["holdout"] = holdout
    out_dir = Path(out_dir).expanduser()
    _prepare_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for name, records in files.items():
            _write_jsonl(tmp / f"{name}.jsonl", records)
        generator = {"version": GENERATOR_VERSION, "n_people": n_people, "n_forget": n_forget,
                     "n_holdout": n_holdout, "facts_per_person": facts_per_person, "seed": seed,
                     "n_general": n_general, "language": "en"}
        task = {**splits.to_json(), "generator": generator}
        (tmp / TASK_FILE).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return splits


def builtin_benchmark_dir(**kwargs) -> Path:
    """The benchmark for these ``generate_benchmark`` arguments, generated once into the cache and reused."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown benchmark argument(s) {', '.join(unknown)}: the arguments are "
                          f"{', '.join(DEFAULTS)}")
    args = {**DEFAULTS, **kwargs}
    _check_args(**args)
    key = hashlib.sha256(json.dumps({**args, "version": GENERATOR_VERSION}, sort_keys=True).encode()).hexdigest()
    path = cache_root() / "benchmarks" / key[:16]
    if not (path / TASK_FILE).is_file():
        try:
            generate_benchmark(path, **args)
        except OSError:
            if not (path / TASK_FILE).is_file():  # another process may have written it at the same time
                raise
    return path

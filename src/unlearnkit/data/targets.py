"""An unlearning target: what a guard must not reveal."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from unlearnkit.errors import DataError


@dataclass(frozen=True)
class Target:
    """A named entity or topic plus what identifies it.

    ``aliases`` are other names for it; ``description`` says what it is;
    ``facts`` are the statements about it that must not come out (used to audit
    answers and as positive examples for prompt classifiers).
    """

    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    facts: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataError("a target needs a non-empty 'name'")
        from unlearnkit.data.target_matching import compact

        for name in self.names:
            if not isinstance(name, str) or not compact(name):
                raise DataError(f"target name or alias {name!r} has no letter or digit once invisible characters "
                                "and punctuation are removed, so no text could be matched against it: give a real name")

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Target:
        if isinstance(data, str):
            return cls(name=data)
        if not isinstance(data, Mapping):
            raise DataError(f"a target is a name (a string) or an object with name, aliases, description, facts; "
                            f"got {type(data).__name__} {data!r:.60}: fix that item")
        unknown = set(data) - {"name", "aliases", "description", "facts"}
        if unknown:
            raise DataError(f"unknown target fields {sorted(unknown)}: a target has name, aliases, description, facts")
        if "name" not in data:
            raise DataError(f"target {dict(data)} has no 'name': give at least a name")
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise DataError(f"target {data['name']!r}: 'description' must be a string (got {description!r:.60})")
        return cls(name=data["name"], aliases=_strings(data, "aliases"), description=description,
                   facts=_strings(data, "facts"))


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A target's list field; a bare string would become one entry per letter, so it is refused."""
    value = data.get(key) or ()
    if isinstance(value, str):
        raise DataError(f"target {data['name']!r}: '{key}' must be a list of strings, got the string {value!r:.60}: "
                        f"write {json.dumps([value[:60]], ensure_ascii=False)}")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DataError(f"target {data['name']!r}: '{key}' must be a list of strings (got {value!r:.60})")
    return tuple(value)


def as_target(value: Target | Mapping[str, Any] | str) -> Target:
    return value if isinstance(value, Target) else Target.from_json(value)


def targets_from_records(records: Iterable) -> list[Target]:
    """One target per record subject (its answers become facts); without subjects,
    one target per question (TOFU records name their author only inside the question)."""
    records = list(records)
    by_subject: dict[str, list[str]] = {}
    for r in records:
        if r.subject:
            by_subject.setdefault(r.subject, []).append(r.answer)
    if by_subject:
        return [Target(name=s, facts=tuple(f)) for s, f in by_subject.items()]
    return [Target(name=r.question, facts=(r.answer,)) for r in dict((r.question, r) for r in records).values()]

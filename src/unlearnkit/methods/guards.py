"""Inference-time methods: a guard wraps an unchanged model behind the same interface.

A guard is saved as a directory with ``guard.json`` (method, options, base model,
targets) plus any files of its own; ``load_model`` on that directory rebuilds it,
so evaluation, attacks and the service accept a guard wherever they accept a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from unlearnkit.errors import ModelLoadError
from unlearnkit.io import write_json_atomic
from unlearnkit.methods.base import UnlearningMethod
from unlearnkit.models.base import LanguageModel
from unlearnkit.models.loading import GUARD_FILE


def record_targets(records) -> list[str]:
    """The forget targets of a record list: its subjects, else its questions."""
    subjects = list(dict.fromkeys(r.subject for r in records if r.subject))
    return subjects or list(dict.fromkeys(r.question for r in records))


class Guard(LanguageModel):
    """A ``LanguageModel`` that answers through ``base`` with a method's intervention."""

    method: ClassVar[str] = ""

    def __init__(self, base: LanguageModel, targets: list[str], options: Any):
        self.base = base
        self.targets = list(targets)
        self.options = options
        self.name = f"{self.method}({base.name})"

    def add_targets(self, targets: list[str]) -> None:
        self.targets.extend(t for t in targets if t not in self.targets)

    def remove_targets(self, targets: list[str]) -> None:
        self.targets = [t for t in self.targets if t not in set(targets)]

    def describe(self) -> dict:
        return {"name": self.name, "kind": type(self).__name__, "base": self.base.describe(),
                "targets": len(self.targets)}

    def save(self, path: str | Path, base_spec: str) -> Path:
        from dataclasses import asdict

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        payload = {"method": self.method, "base_model": base_spec, "options": asdict(self.options),
                   "targets": self.targets}
        write_json_atomic(path / GUARD_FILE, payload)
        return path


class GuardMethod(UnlearningMethod):
    """An inference-time method: ``apply`` returns a guard, never new weights."""

    family: ClassVar[str] = "guard"
    guard_class: ClassVar[type[Guard]]

    def apply(self, model, task, out_dir, train):
        return self.guard_class(model, record_targets(task.forget), self.options)

    @classmethod
    def rebuild(cls, base: LanguageModel, payload: dict, path: Path) -> Guard:
        """Recreate the guard saved in ``path`` (``payload`` = its guard.json) around ``base``.

        Guards with files of their own (a classifier, an index) override this.
        """
        return cls.guard_class(base, payload.get("targets", []), cls.Options(**payload.get("options", {})))


def load_guard(path: Path, device: str | None = None) -> Guard:
    from unlearnkit.methods.registry import get_method_class
    from unlearnkit.models.loading import load_model

    try:
        payload = json.loads((path / GUARD_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path / GUARD_FILE} is not valid JSON ({exc}); recreate it with 'unlearnkit unlearn'") from exc
    cls = get_method_class(payload["method"])
    base = load_model(payload["base_model"], device=device)
    return cls.rebuild(base, payload, path)

"""Inference-time methods: a guard wraps an unchanged model behind the same interface.

A guard is saved as a directory with ``guard.json`` (method, options, base model,
targets) plus any files of its own; ``load_model`` on that directory rebuilds it,
so evaluation, attacks and the service accept a guard wherever they accept a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from unlearnkit.data.targets import Target, as_target, targets_from_records
from unlearnkit.errors import ModelLoadError
from unlearnkit.io import write_json_atomic
from unlearnkit.methods.base import UnlearningMethod
from unlearnkit.models.base import LanguageModel
from unlearnkit.models.loading import GUARD_FILE


class Guard(LanguageModel):
    """A ``LanguageModel`` that answers through ``base`` with a method's intervention."""

    method: ClassVar[str] = ""

    def __init__(self, base: LanguageModel, targets: list, options: Any):
        self.base = base
        self.targets: list[Target] = []
        self.options = options
        self.name = f"{self.method}({base.name})"
        self.add_targets(targets)

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    def add_targets(self, targets: list) -> None:
        """Add targets (``Target``, dict or name); they apply to the next query."""
        known = set(self.target_names)
        for t in map(as_target, targets):
            if t.name not in known:
                self.targets.append(t)
                known.add(t.name)

    def remove_targets(self, names: list) -> None:
        drop = {as_target(n).name for n in names}
        self.targets = [t for t in self.targets if t.name not in drop]

    def describe(self) -> dict:
        return {"name": self.name, "kind": type(self).__name__, "base": self.base.describe(),
                "targets": len(self.targets)}

    def save(self, path: str | Path, base_spec: str) -> Path:
        from dataclasses import asdict

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        payload = {"method": self.method, "base_model": base_spec, "options": asdict(self.options),
                   "targets": [t.to_json() for t in self.targets]}
        write_json_atomic(path / GUARD_FILE, payload)
        return path


class GuardMethod(UnlearningMethod):
    """An inference-time method: ``apply`` returns a guard, never new weights."""

    family: ClassVar[str] = "guard"
    guard_class: ClassVar[type[Guard]]

    def apply(self, model, task, out_dir, train):
        return self.guard_class(model, targets_from_records(task.forget), self.options)

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

"""Inference-time methods: a guard wraps an unchanged model behind the same interface.

A guard is saved as a directory with ``guard.json`` (method, options, base model,
targets) plus any files of its own; ``load_model`` on that directory rebuilds it,
so evaluation, attacks and the service accept a guard wherever they accept a model.
"""

from __future__ import annotations

import contextvars
import json
from pathlib import Path
from typing import Any, ClassVar

from unlearnkit.data.targets import Target, as_target, targets_from_records
from unlearnkit.errors import ConfigError, DataError, ModelLoadError
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

    def seen_prompt(self, prompt, chat: bool = True):
        """The prompt as the model under the guard receives it (a guard that adds instructions says so here);
        the gateway checks the context length against it."""
        return prompt

    def prompt_embeddings(self, prompts, chat: bool = True):
        """Each prompt's input embeddings as the guard feeds them to its base in one pass, for attacks that work in
        embedding space (a soft prefix goes before them). None where the guard's answer is not one pass of a local
        model over the prompt (an agent chain, an endpoint): such a guard is attacked through the model beneath."""
        return None

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

    def save(self, path: str | Path, base_spec: str | None = None) -> Path:
        from dataclasses import asdict

        if not base_spec:
            raise ConfigError(f"saving the {self.method} guard needs the spec of the model it wraps (base_spec), "
                              "e.g. the path it was loaded from")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        payload = {"method": self.method, "base_model": base_spec, "options": asdict(self.options),
                   "targets": [t.to_json() for t in self.targets]}
        write_json_atomic(path / GUARD_FILE, payload)
        return path


class GuardMethod(UnlearningMethod):
    """An inference-time method: ``apply`` returns a guard, never new weights."""

    family: ClassVar[str] = "guard"
    saves_into: ClassVar[str] = ""  # guard.json sits in the run directory itself
    guard_class: ClassVar[type[Guard]]

    def apply(self, model, task, out_dir, train):
        return self.guard_class(model, targets_from_records(task.forget), self.options)

    @classmethod
    def rebuild(cls, base: LanguageModel, payload: dict, path: Path) -> Guard:
        """Recreate the guard saved in ``path`` (``payload`` = its guard.json) around ``base``.

        Guards with files of their own (a classifier, an index) override this.
        """
        return cls.guard_class(base, payload.get("targets", []), cls.Options(**payload.get("options", {})))


MAX_GUARD_DEPTH = 8  # guards around guards, at most (a cycle of base_model links stops here)
_GUARD_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("guard_depth", default=0)


def load_guard(path: Path, device: str | None = None) -> Guard:
    from unlearnkit.methods.registry import get_method_class
    from unlearnkit.models.loading import load_model

    file = path / GUARD_FILE
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{file} is not valid JSON ({exc}); recreate it with 'unlearnkit unlearn'") from exc
    if not isinstance(payload, dict):
        raise ModelLoadError(f"{file} must hold a JSON object; recreate it with 'unlearnkit unlearn'")
    for key in ("method", "base_model"):
        if not isinstance(payload.get(key), str) or not payload[key]:
            raise ModelLoadError(f"{file} has no '{key}': recreate it with 'unlearnkit unlearn' "
                                 "(a guard names its method and the model it wraps)")
    base_spec = payload["base_model"]
    if Path(base_spec).expanduser().exists() and Path(base_spec).expanduser().resolve() == path.resolve():
        raise ModelLoadError(f"{file} names its own directory as base_model: point base_model at the model the guard "
                             "wraps (a Hugging Face directory, a .gguf file or 'smollm2')")
    depth = _GUARD_DEPTH.get()
    if depth >= MAX_GUARD_DEPTH:
        raise ModelLoadError(f"{file}: guards wrap guards more than {MAX_GUARD_DEPTH} deep (a base_model cycle?): "
                             "point base_model at a model, not at a guard that leads back here")
    try:
        cls = get_method_class(payload["method"])
    except ConfigError as exc:
        raise ModelLoadError(f"{file}: {exc}; recreate the guard with 'unlearnkit unlearn'") from exc
    if not issubclass(cls, GuardMethod):
        raise ModelLoadError(f"{file} names '{payload['method']}', which changes weights and is not a guard: "
                             "recreate the guard with 'unlearnkit unlearn'")
    payload = {**payload, "options": _checked_options(cls, payload.get("options"), file)}
    if not isinstance(payload.get("targets", []), list):
        raise ModelLoadError(f"{file}: 'targets' must be a list; recreate the guard with 'unlearnkit unlearn'")
    token = _GUARD_DEPTH.set(depth + 1)
    try:
        base = load_model(base_spec, device=device)
    finally:
        _GUARD_DEPTH.reset(token)
    try:
        return cls.rebuild(base, payload, path)
    except (DataError, ConfigError) as exc:
        raise ModelLoadError(f"{file}: {exc} (or recreate the guard with 'unlearnkit unlearn')") from exc


def _checked_options(cls: type[GuardMethod], options: Any, file: Path) -> dict:
    """guard.json's options, each of its field's type and valid for the method. Keys no longer known (an option
    removed since the guard was saved) are dropped with a warning, so older guards keep loading."""
    import logging

    from unlearnkit.options import fits, kind_text, option_specs

    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ModelLoadError(f"{file}: 'options' must be a JSON object; recreate the guard with 'unlearnkit unlearn'")
    specs = option_specs(cls.Options)
    unknown = sorted(set(options) - set(specs))
    if unknown:
        logging.getLogger(__name__).warning("%s: ignoring option(s) %s that method '%s' does not have (options: %s)",
                                            file, ", ".join(unknown), cls.name, ", ".join(specs))
    kept = {k: v for k, v in options.items() if k in specs}
    for key, value in kept.items():
        if not fits(value, specs[key].annotation):
            raise ModelLoadError(f"{file}: option '{key}' must be {kind_text(specs[key].annotation)}, got "
                                 f"{value!r:.80}; fix it, or recreate the guard with 'unlearnkit unlearn'")
    try:
        cls(cls.Options(**kept))  # runs the method's own checks of its options
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{file}: {exc}; fix it, or recreate the guard with 'unlearnkit unlearn'") from exc
    return kept

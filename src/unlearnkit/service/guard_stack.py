"""The guard stack: the chosen guard around the upstream model, plus deterministic filters.

Layers, in the order a request meets them:

1. prompt filter (optional, on by default): a conversation that names a registered
   target (name or alias, compared by skeleton: case, look-alike letters, accents,
   invisible characters and separators do not hide it; ``data/target_matching.py``)
   is refused without calling the model;
2. the guard: ``eco`` | ``alu`` | ``prompt`` (the prompting baseline) around the
   upstream, or ``none`` (the upstream as is: an edited model, or a bare one);
3. output filter (always on unless disabled): an answer that contains a target's
   name or alias (also spelled out with separators or reversed) or quotes one of
   its facts is replaced by a refusal. This is what holds when the guard or the
   model is weak, and what keeps the target list itself from leaking (the
   prompting guard puts the list in its system prompt; a prompt injection can make
   a model repeat it; the filter removes any answer that does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unlearnkit.data.target_matching import TargetMatcher
from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError
from unlearnkit.models.base import LanguageModel

GUARD_METHODS = {"prompting": "prompting", "eco": "eco", "alu": "alu"}


def resolve_guard_class(kind: str):
    """The registry's method class for ``kind`` (eco | alu | prompting), with a clear error."""
    name = GUARD_METHODS.get(kind)
    if name is None:
        raise ConfigError(f"unknown guard '{kind}': choose eco, alu, prompt or none")
    from unlearnkit.methods.registry import get_method_class

    try:
        cls = get_method_class(name)
    except ConfigError:
        raise ConfigError(f"the '{kind}' guard is not available in this installation of unlearnkit "
                          f"(no method '{name}' in the method registry): use --guard prompt or --guard none") from None
    except ImportError as exc:
        raise ConfigError(f"the '{kind}' guard could not be loaded ({exc}): use --guard prompt or --guard none") from exc
    if getattr(cls, "family", "") != "guard" or not hasattr(cls, "guard_class"):
        raise ConfigError(f"method '{name}' is not an inference-time guard; the gateway needs eco, alu or prompt")
    return cls


def build_guard(kind: str, base: LanguageModel, options: dict[str, str] | None = None,
                targets: Sequence[Target] = ()) -> LanguageModel:
    """Construct the guard through the method registry: ``cls.guard_class(base, targets, options)``."""
    cls = resolve_guard_class(kind)
    opts = cls.from_strings(dict(options or {})).options
    return cls.guard_class(base, list(targets), opts)


class GuardStack:
    """The guard (if any) around the upstream, kept in step with the registry.

    Only the engine's worker thread calls ``apply`` and ``model``; ``apply`` is
    given a whole snapshot, so a batch sees either all of a change or none of it.
    """

    def __init__(self, upstream: LanguageModel, kind: str = "prompting", options: dict[str, str] | None = None):
        from unlearnkit.methods.guards import Guard

        self.kind = kind
        self.options = dict(options or {})
        self.upstream = upstream
        self.pinned: set[str] = set()
        self.guard: LanguageModel | None = None
        self._deferred = False
        if kind == "none":
            if isinstance(upstream, Guard):
                # A guard loaded from its directory (or passed in): keep its own targets,
                # add the registry's on top.
                self.guard = upstream
                self.pinned = set(upstream.target_names)
        else:
            cls = resolve_guard_class(kind)
            cls.from_strings(self.options)  # option errors now, not at the first request
            try:
                self.guard = build_guard(kind, upstream, self.options)
            except ConfigError:
                raise
            except Exception:  # some guards need at least one target: build at the first sync
                self._deferred = True
        self.applied: dict[str, Target] = {}
        self.matcher = TargetMatcher(())
        self.version: int | None = None

    # -- registry sync --------------------------------------------------------------
    def apply(self, version: int, targets: Sequence[Target]) -> None:
        """Make the guard and the filters enforce exactly ``targets``."""
        new = {t.name: t for t in targets}
        if self._deferred and new:
            self.guard = build_guard(self.kind, self.upstream, self.options, list(new.values()))
            self._deferred = False
            self.applied = dict(new)
        elif self.guard is not None and hasattr(self.guard, "add_targets"):
            changed = [n for n, t in self.applied.items() if n in new and t.to_json() != new[n].to_json()]
            gone = [n for n in self.applied if n not in new and n not in self.pinned]
            if gone or changed:
                self.guard.remove_targets(gone + changed)
            fresh = [t for n, t in new.items() if n not in self.applied or n in changed]
            if fresh:
                self.guard.add_targets(fresh)
            self.applied = dict(new)
        else:
            self.applied = dict(new)
        self.matcher = TargetMatcher(targets)
        self.version = version

    # -- what answers ---------------------------------------------------------------
    def model(self) -> LanguageModel:
        """The model to call for this batch: the guard, or the bare upstream while no
        target is registered (a guard built here with nothing to guard only adds
        latency; a guard passed in as the upstream always answers)."""
        if self.guard is None:
            return self.upstream
        if self.kind != "none" and not self.applied:
            return self.upstream
        return self.guard

    def describe(self) -> dict[str, Any]:
        return {"guard": self.kind, "upstream": getattr(self.upstream, "name", "model"),
                "targets": len(self.applied), "version": self.version}

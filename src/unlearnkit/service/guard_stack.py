"""The guard stack: the chosen guard around the upstream model, plus deterministic filters.

Layers, in the order a request meets them:

1. prompt filter (optional, on by default): a conversation that names a registered
   target (name or alias, compared by skeleton: case, look-alike letters, accents,
   invisible characters and separators do not hide it; ``data/target_matching.py``)
   or refers to one without its name ("Who played Inspector Vale?": its works, roles,
   places, dates, relatives; ``data/reference_detection.py``) is refused without calling
   the model. Options read here, not by the guard: ``references`` (on | off),
   ``reference_budget`` (the false-refusal budget on neighbour questions, 0.02) and
   ``profile_model`` (an OpenAI-compatible URL asked how people refer to each target);
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

import logging
from collections.abc import Sequence
from typing import Any

from unlearnkit.data.target_matching import TargetMatcher
from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError
from unlearnkit.models.base import LanguageModel

BUILTIN_GUARDS = ("prompting", "eco", "alu")  # named in the error when one is missing from this installation
STACK_OPTIONS = ("references", "reference_budget", "profile_model")
"""Options of the prompt filter itself, taken out before the guard sees its options."""
GATEWAY_GUARD_DEFAULTS = {"neighbour_budget": "0.02", "other_names": "true"}
"""What the gateway turns on in the guards it builds, where the guard declares the option and ``--opt`` does
not set it: the calibrations on the targets' neighbour questions (docs/indirect-references.md). A method's own
defaults stay the published ones, so a benchmark row still means the paper's method."""
log = logging.getLogger(__name__)


class PromptMatcher:
    """What the prompt filter refuses: a target's name (``TargetMatcher``) or a reference to it
    (``ReferenceDetector``). ``leaks`` (the output filter) stays the name matcher's. ``explain`` says
    which facet fired, for the audit."""

    def __init__(self, names: TargetMatcher, references=None):
        self.names, self.references = names, references

    def __bool__(self) -> bool:
        return bool(self.names)

    def mentions(self, text: str) -> list[str]:
        found = set(self.names.mentions(text))
        if self.references is not None and text:
            detections = self.references.detect_all(text)
            self._last = (text, detections)  # explain() of the same prompt reuses them (one worker thread)
            for d in detections:
                if d.target not in found:
                    log.info("prompt refers to target %r without naming it (%s: %r, score %.3f)", d.target,
                             d.facet.kind, d.facet.text, d.score)
            found |= {d.target for d in detections}
        return sorted(found)

    def explain(self, text: str) -> list[dict]:
        """The detector's findings for ``text`` (those ``mentions`` just computed, when it was the same text)."""
        if self.references is None:
            return []
        last = getattr(self, "_last", None)
        detections = last[1] if last is not None and last[0] == text else self.references.detect_all(text)
        return [d.to_json() for d in detections]

    def leaks(self, text: str) -> list[str]:
        return self.names.leaks(text)

    def patterns(self) -> dict:
        """The output filter's patterns (names, parts, facts), which a stream's hold-back window watches."""
        return self.names.patterns()


def _reference_detector(options: dict[str, str]):
    """The prompt filter's reference detector from the stack options (None when switched off)."""
    on = str(options.get("references", "on")).strip().lower()
    if on in ("off", "false", "0", "no"):
        return None
    if on not in ("on", "true", "1", "yes"):
        raise ConfigError(f"option references must be on or off, got '{options['references']}'")
    try:
        budget = float(options.get("reference_budget", 0.02))
    except ValueError:
        raise ConfigError(f"option reference_budget must be a number in (0, 1), got "
                          f"'{options['reference_budget']}'") from None
    if not 0.0 < budget < 1.0:
        raise ConfigError(f"option reference_budget must be in (0, 1), got {budget}")
    from unlearnkit.data.reference_detection import ReferenceDetector

    return ReferenceDetector(budget=budget, profile_model=options.get("profile_model") or None)


def resolve_guard_class(kind: str):
    """The registry's method class for ``kind``: any method whose family is "guard" is servable."""
    from unlearnkit.methods.registry import get_method_class, guard_names

    def choices() -> str:
        return ", ".join(sorted("prompt" if n == "prompting" else n for n in guard_names())) + " or none"

    try:
        cls = get_method_class(kind)
    except ConfigError:
        if kind in BUILTIN_GUARDS:
            raise ConfigError(f"the '{kind}' guard is not available in this installation of unlearnkit "
                              f"(no method '{kind}' in the method registry): use --guard prompt or --guard none"
                              ) from None
        raise ConfigError(f"unknown guard '{kind}': choose {choices()}") from None
    except ImportError as exc:
        raise ConfigError(f"the '{kind}' guard could not be loaded ({exc}): use --guard prompt or --guard none") from exc
    if getattr(cls, "family", "") != "guard" or not hasattr(cls, "guard_class"):
        raise ConfigError(f"method '{kind}' changes weights, it is not an inference-time guard: serve the model it "
                          f"produced with --guard none, or choose {choices()}")
    return cls


def gateway_options(kind: str, options: dict[str, str]) -> dict[str, str]:
    """``options`` over ``GATEWAY_GUARD_DEFAULTS`` (only those the guard declares)."""
    from dataclasses import fields

    declared = {f.name for f in fields(resolve_guard_class(kind).Options)}
    return {**{k: v for k, v in GATEWAY_GUARD_DEFAULTS.items() if k in declared}, **options}


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
        self.references = _reference_detector(self.options)
        for key in STACK_OPTIONS:
            self.options.pop(key, None)
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
            self.options = gateway_options(kind, self.options)
            cls.from_strings(self.options)  # option errors now, not at the first request
            try:
                self.guard = build_guard(kind, upstream, self.options)
            except ConfigError:
                raise
            except Exception:  # some guards need at least one target: build at the first sync
                self._deferred = True
        self.applied: dict[str, Target] = {}
        self.matcher = PromptMatcher(TargetMatcher(()))
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
        if self.references is not None:
            self.references.build(targets)
            self.references.calibrate()
        self.matcher = PromptMatcher(TargetMatcher(targets), self.references)
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
                "targets": len(self.applied), "version": self.version,
                "references": self.references.describe() if self.references is not None else "off"}

"""The guard stack: the chosen guard around the upstream model, plus deterministic filters.

Layers, in the order a request meets them:

1. prompt filter (optional, on by default): a prompt that names a registered
   target (name or alias, whole words, case- and Unicode-insensitive) is refused
   without calling the model;
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

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError
from unlearnkit.models.base import LanguageModel

# Characters that render as nothing: removed before matching so "Jo\u200bhn" matches "John".
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_SPACE = re.compile(r"\s+")

GUARD_METHODS = {"prompting": "prompting", "eco": "eco", "alu": "alu"}


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, casefolded, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    return _SPACE.sub(" ", text).strip()


def compact(text: str) -> str:
    """Only the letters and digits of ``normalize(text)``: "J.-O h_n" -> "john"."""
    return "".join(ch for ch in normalize(text) if ch.isalnum())


class TargetMatcher:
    """Finds which targets a text names, and whether it leaks any of them.

    ``mentions`` (used on prompts) matches whole-word names and aliases.
    ``leaks`` (used on answers) also matches names with their letters separated
    ("J-o-h-n D-o-e"), reversed, or run together, and verbatim facts; it is
    stricter on purpose: a false refusal costs less than a leak.
    """

    def __init__(self, targets: Iterable[Target], *, min_compact: int = 6, min_fact: int = 24):
        self.targets = tuple(targets)
        by_name: dict[str, set[str]] = {}
        for t in self.targets:
            for n in t.names:
                key = normalize(n)
                if key:
                    by_name.setdefault(key, set()).add(t.name)
        self._by_name = by_name
        if by_name:
            alternatives = sorted(by_name, key=len, reverse=True)
            body = "|".join(r"\s+".join(map(re.escape, k.split(" "))) for k in alternatives)
            self._regex: re.Pattern | None = re.compile(rf"(?<!\w)(?:{body})(?!\w)")
        else:
            self._regex = None
        self._compact: list[tuple[str, str]] = []
        for key, owners in by_name.items():
            c = compact(key)
            if len(c) >= min_compact:
                for owner in owners:
                    self._compact.append((c, owner))
        self._facts: list[tuple[str, str]] = []
        for t in self.targets:
            for f in t.facts:
                nf = normalize(f).rstrip(" .!?")
                if len(nf) >= min_fact:
                    self._facts.append((nf, t.name))

    def __bool__(self) -> bool:
        return bool(self.targets)

    def mentions(self, text: str) -> list[str]:
        """Names of the targets whose name or alias appears as whole words in ``text``."""
        if self._regex is None or not text:
            return []
        found: set[str] = set()
        for m in self._regex.finditer(normalize(text)):
            found |= self._by_name.get(_SPACE.sub(" ", m.group(0)), set())
        return sorted(found)

    def leaks(self, text: str) -> list[str]:
        """Names of the targets an answer reveals (names, obfuscated names, facts)."""
        if not self.targets or not text:
            return []
        found = set(self.mentions(text))
        flat = compact(text)
        if flat:
            rev = flat[::-1]
            for c, owner in self._compact:
                if c in flat or c in rev:
                    found.add(owner)
        if self._facts:
            norm = normalize(text)
            for f, owner in self._facts:
                if f in norm:
                    found.add(owner)
        return sorted(found)


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


def tokenizer_model(model: LanguageModel):
    """The innermost model with a tokenizer (walking guards' ``base``), or None."""
    seen = 0
    while model is not None and seen < 16:
        if hasattr(model, "tokenizer") and hasattr(model, "prompt_ids"):
            return model
        model = getattr(model, "base", None)
        seen += 1
    return None

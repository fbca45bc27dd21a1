"""Does a text name a target? The one answer the gateway's filters use.

Text is compared by its **skeleton** (``fold``), so that spellings a reader takes for the
same name match:

* Unicode compatibility forms (NFKC: full-width letters, ligatures) and case (casefold);
* every default-ignorable or format code point removed (zero-width spaces and joiners, LRM
  and other bidi marks, soft hyphen, word joiner, invisible operators, variation selectors,
  tag characters, the combining grapheme joiner, Hangul fillers);
* combining marks removed after decomposition ("Básil" → "basil");
* confusable letters mapped to the Latin letter they imitate (Unicode TR#39 data as shipped
  by ``confusable-homoglyphs``: Cyrillic "а", "і", Greek "Α" …).

A name then matches as a run of whole words whose letters spell it, whatever separates
them or not ("Al-Kuwaiti", "Al‐Kuwaiti", "Al Kuwaiti", "AlKuwaiti", "B-a-s-i-l"), and a name of
two or more parts also matches when every part appears as a whole word anywhere in the text,
in any order ("Al-Kuwaiti, Basil"; a first name and a surname in different turns of one
conversation, which the caller joins into one text).

``leaks`` (answers) is stricter than ``mentions`` (prompts) on purpose, since a false refusal
costs less than a leak: it also finds a name inside longer runs of letters ("JorundHalvsen",
reversed, letters spread by punctuation) and verbatim facts.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from unlearnkit.data.targets import Target

# Code points that render as nothing but are not in category Cf (which is removed as a whole).
_IGNORABLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x3164, 0xFFA0}
_IGNORABLE_RANGES = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))  # variation selectors
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
MIN_PART = 3  # name parts shorter than this ("Al", "J.") never match on their own


def _ignorable(ch: str) -> bool:
    cp = ord(ch)
    if cp in _IGNORABLE or any(lo <= cp <= hi for lo, hi in _IGNORABLE_RANGES):
        return True
    return unicodedata.category(ch) in ("Cf", "Mn", "Me")


@functools.lru_cache(maxsize=1)
def _confusables() -> dict[str, str]:
    """Non-ASCII character → the ASCII letter or digit it imitates (TR#39 confusables)."""
    try:
        import json
        import os

        import confusable_homoglyphs
    except ImportError:  # pragma: no cover - a declared dependency
        return {}
    path = os.path.join(os.path.dirname(confusable_homoglyphs.__file__), "confusables.json")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    table: dict[str, str] = {}
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii():
            continue
        for g in glyphs:
            c = g.get("c", "")
            if len(c) == 1 and c.isascii() and c.isalnum():
                table[char] = c
                break
    return table


@functools.lru_cache(maxsize=65536)
def _fold_char(ch: str) -> str:
    if ch.isascii():
        return ch.casefold()
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        if _ignorable(part):
            continue
        part = _confusables().get(part, part)
        out.append(part)
    return "".join(out).casefold()


def fold(text: str) -> str:
    """The skeleton of ``text``: see the module's doc. Whitespace is collapsed to one space."""
    text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub(" ", "".join(_fold_char(ch) for ch in text)).strip()


def words(text: str) -> list[str]:
    """The skeleton's words (runs of letters and digits)."""
    return [w.replace("_", "") for w in _WORD.findall(fold(text)) if w.strip("_")]


def located_words(text: str) -> list[tuple[str, int, int]]:
    """The skeleton's words, each with the character span it covers in ``text`` itself (``words`` with places)."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        for c in _fold_char(ch):  # _fold_char applies the compatibility decomposition (NFKD ⊇ NFKC's K)
            chars.append(c)
            origin.append(i)
    folded = "".join(chars)
    out = []
    for m in _WORD.finditer(folded):
        w = m.group(0).replace("_", "")
        if w:
            out.append((w, origin[m.start()], origin[m.end() - 1] + 1))
    return out


class TermFinder:
    """Where terms (names, name parts, fact terms) occur in a text: each term matches as a run of whole
    skeleton words that spells it, so case, separators, accents, invisible characters and look-alike
    letters do not hide it ("Al-Kuwaiti", "al kuwaiti", "AlKuwaiti", "T a l i t h a", "Tаlitha" in Cyrillic)."""

    def __init__(self, terms: Iterable[str]):
        self.terms = tuple(dict.fromkeys(t for t in terms if compact(t)))
        self._compact = sorted({compact(t) for t in self.terms}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._compact)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans in ``text`` of every run of words that spells a term (overlaps allowed)."""
        if not self._compact or not text:
            return []
        located = located_words(text)
        targets = set(self._compact)
        longest = len(self._compact[0])
        out = []
        for i in range(len(located)):
            acc = ""
            for j in range(i, len(located)):
                acc += located[j][0]
                if len(acc) > longest:
                    break
                if acc in targets:
                    out.append((located[i][1], located[j][2]))
        return sorted(out)

    def found(self, text: str) -> bool:
        return bool(self.spans(text))


def compact(text: str) -> str:
    """Only the letters and digits of the skeleton: "J.-O h_n" → "john"."""
    return "".join(words(text))


class TargetMatcher:
    """Finds which targets a text names (``mentions``) and which an answer reveals (``leaks``)."""

    def __init__(self, targets: Iterable[Target], *, min_compact: int = 6, min_fact: int = 24):
        self.targets = tuple(targets)
        self._names: list[tuple[str, str]] = []  # (compact name, owner)
        self._parts: list[tuple[tuple[str, ...], str]] = []  # (name parts, owner) for names of 2+ parts
        for t in self.targets:
            for n in t.names:
                parts = tuple(words(n))
                c = "".join(parts)
                if not c:
                    continue
                self._names.append((c, t.name))
                strong = tuple(p for p in parts if len(p) >= MIN_PART)
                if len(parts) >= 2 and len(strong) >= 2:
                    self._parts.append((strong, t.name))
        self._compact = [(c, owner) for c, owner in self._names if len(c) >= min_compact]
        # for ``mentions`` without a loop over targets: every name (and its prefixes, so a run of words stops
        # as soon as it spells the start of none), and the multi-part names by their first part
        self._by_compact: dict[str, set[str]] = {}
        for c, owner in self._names:
            self._by_compact.setdefault(c, set()).add(owner)
        self._name_prefixes = {c[:k] for c in self._by_compact for k in range(1, len(c))}
        self._by_first_part: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for parts, owner in self._parts:
            self._by_first_part.setdefault(parts[0], []).append((parts, owner))
        self._facts: list[tuple[str, str]] = []
        for t in self.targets:
            for f in t.facts:
                nf = " ".join(words(f))
                if len(nf) >= min_fact:
                    self._facts.append((nf, t.name))

    def __bool__(self) -> bool:
        return bool(self.targets)

    def patterns(self) -> dict[str, list]:
        """The normalised strings ``leaks`` looks for, for a filter that sees an answer grow (the gateway's
        streaming hold-back): ``names`` (compact name or alias, owner), ``parts`` (the strong parts of a name
        of several, owner), ``compact`` (the names also found inside longer runs of letters and reversed) and
        ``facts`` (a fact's skeleton words joined by single spaces, owner)."""
        return {"names": list(self._names), "parts": list(self._parts), "compact": list(self._compact),
                "facts": list(self._facts)}

    def mentions(self, text: str) -> list[str]:
        """Targets named in ``text``: a name or alias spelled by whole words, or all its parts present."""
        if not self._names or not text:
            return []
        tokens = words(text)
        present = set(tokens)
        found: set[str] = set()
        for i in range(len(tokens)):  # every run of whole words that spells a name
            acc = ""
            for tok in tokens[i:]:
                acc += tok
                found |= self._by_compact.get(acc, set())
                if acc not in self._name_prefixes:
                    break
        for first in present & self._by_first_part.keys():
            found |= {owner for parts, owner in self._by_first_part[first] if all(p in present for p in parts)}
        return sorted(found)

    def leaks(self, text: str) -> list[str]:
        """Targets an answer reveals: what ``mentions`` finds, names inside longer runs of letters
        (also reversed), and verbatim facts."""
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
            norm = " ".join(words(text))
            for f, owner in self._facts:
                if f in norm:
                    found.add(owner)
        return sorted(found)


__all__ = ["MIN_PART", "TargetMatcher", "TermFinder", "compact", "fold", "located_words", "words"]

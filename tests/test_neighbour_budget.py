"""ECO's classifier and ALU's retrieval calibrated on neighbour questions (option ``neighbour_budget``)."""

from __future__ import annotations

import math

import pytest

from unlearnkit.data.reference_detection import NoEncoder, ReferenceDetector, joint_threshold
from unlearnkit.errors import ConfigError
from unlearnkit.methods.registry import build_method

from test_reference_detection import BASIL, JANE, OTHER

TARGETS = [JANE, BASIL, OTHER]
NAMED = ["Where was Jane Doe born?", "Tell me about Basil Mahfouz Al-Kuwaiti.", "What did Nikolai Abilov write?"]


def test_joint_threshold_counts_what_the_other_rules_catch():
    scores = [i / 100 for i in range(99)]
    caught = [i % 50 == 0 for i in range(99)]  # 2 caught by the other rules (scores 0.0 and 0.5)
    tau = joint_threshold(scores, caught, 0.05)  # k = ceil(100 * 0.95) = 95: at most 4 of 99 above
    flagged = sum(c or s > tau for s, c in zip(scores, caught))
    assert flagged <= 4 and sum(s > tau for s in scores) == 2  # the rules took 2 of the 4 places
    assert joint_threshold(scores, [True] * 5 + [False] * 94, 0.05) == math.inf  # the rules use it all up
    with pytest.raises(ValueError, match="caught"):
        joint_threshold(scores, caught[:3], 0.05)


def eco(tiny_lm, budget):
    from unlearnkit.methods.eco import ECOGuard, ECOOptions

    return ECOGuard(tiny_lm, TARGETS, ECOOptions(encoder="hashing", sigma_search=False, threshold=1e-4,
                                                 neighbour_budget=budget))


def test_eco_threshold_keeps_flagged_calibration_neighbours_within_budget(tiny_lm):
    on = eco(tiny_lm, 0.02)
    neighbours = list(on.references.caught_neighbours())
    assert len(neighbours) >= 100
    flagged = sum(on.flag(neighbours))
    assert flagged <= 0.02 * len(neighbours)
    assert on.classifier.threshold > 1e-4
    info = on.describe()
    assert info["neighbour_budget"] == 0.02 and info["neighbour_calibration"]["neighbours"] == len(neighbours)
    assert info["neighbour_calibration"]["neighbours_flagged"] <= 0.02
    assert on.flag(NAMED) == [True, True, True]  # a name always flags
    # the option off: the fixed threshold alone, which flags more of the same neighbours
    off = eco(tiny_lm, None)
    assert off.classifier.threshold == 1e-4 and "neighbour_budget" not in off.describe()
    assert sum(off.flag(neighbours)) > flagged and off.flag(NAMED) == [True, True, True]


def test_eco_threshold_survives_adding_targets(tiny_lm):
    g = eco(tiny_lm, 0.02)
    g.remove_targets(["Nikolai Abilov"])
    g.add_targets([OTHER])
    neighbours = list(g.references.caught_neighbours())
    assert sum(g.flag(neighbours)) <= 0.02 * len(neighbours)


def index(budget):
    from unlearnkit.methods.alu_retrieval import HashingEmbedder, TargetIndex

    return TargetIndex(HashingEmbedder(), references=ReferenceDetector(NoEncoder()),
                       neighbour_budget=budget).build(TARGETS)


def test_alu_retrieval_keeps_calibration_neighbours_within_budget():
    on = index(0.02)
    neighbours = list(on.references.caught_neighbours())
    retrieved = sum(bool(on.retrieve(q)) for q in neighbours)
    assert retrieved <= 0.02 * len(neighbours)
    assert on.neighbour_calibration["neighbours_retrieved"] <= 0.02
    off = index(None)
    assert off.relevance_threshold == -math.inf and not off.neighbour_calibration
    assert sum(bool(off.retrieve(q)) for q in neighbours) > retrieved  # the key terms retrieve them before
    for q in NAMED:
        assert [h.reason for h in on.retrieve(q)][:1] == ["name"]
        assert [h.reason for h in off.retrieve(q)][:1] == ["name"]


def test_a_draft_repeating_the_question_is_no_evidence():
    q = "What is 'Promise by the Seine' about?"
    draft = "'Promise by the Seine' is a novel about exile."
    assert index(None).retrieve(q, draft)  # the title is a key term of Basil's facts
    assert not index(0.02).retrieve(q, draft)
    # what the draft adds still counts: his birth date and city are not in the question
    assert index(0.02).retrieve(q, "Its author was born in Kuwait City on 8 September 1956; he is Basil "
                                   "Mahfouz Al-Kuwaiti.")[0].reason == "name"


def test_alu_guard_passes_the_option_to_its_index(tiny_lm):
    from unlearnkit.methods.alu import ALUGuard, ALUOptions
    from unlearnkit.methods.alu_retrieval import HashingEmbedder

    g = ALUGuard(tiny_lm, TARGETS, ALUOptions(neighbour_budget=0.02), embedder=HashingEmbedder())
    idx = g._ensure_index()
    assert idx.neighbour_budget == 0.02 and idx.references.budget == 0.02
    assert g.describe()["neighbour_calibration"]["neighbours_retrieved"] <= 0.02
    g.add_targets([Target_named("Orla Venn")])
    assert g._ensure_index().neighbour_budget == 0.02  # kept when the index is rebuilt
    off = ALUGuard(tiny_lm, TARGETS, ALUOptions(neighbour_budget=None), embedder=HashingEmbedder())
    assert off._ensure_index().neighbour_budget is None and "neighbour_calibration" not in off.describe()


def Target_named(name):
    from unlearnkit.data.targets import Target

    return Target(name, facts=(f"{name} lives in Karsk.",))


@pytest.mark.parametrize("method", ["eco", "alu"])
def test_the_option_reads_none_and_checks_its_range(method):
    assert build_method(method, {"neighbour_budget": "none"}).options.neighbour_budget is None
    assert build_method(method, {"neighbour_budget": "0.05"}).options.neighbour_budget == 0.05
    assert build_method(method, {}).options.neighbour_budget is None  # the published method; the gateway sets it
    with pytest.raises(ConfigError, match="neighbour_budget"):
        build_method(method, {"neighbour_budget": "1.5"})


def test_a_name_part_of_someone_else_in_the_question_is_no_name_hit_in_the_draft():
    from unlearnkit.data.targets import Target
    from unlearnkit.methods.alu_retrieval import HashingEmbedder, TargetIndex

    idx = TargetIndex(HashingEmbedder()).build([Target("Halvard Harrowgate", facts=("Halvard Harrowgate was born "
                                                                                    "in Brelund.",))])
    q = "In which city was Halvard Eskarrow born?"
    assert not idx.retrieve(q, "Halvard Eskarrow was born in the city of Halvard, Sweden.")
    # the same part, when the question does not name someone else with it, still counts
    assert [h.reason for h in idx.retrieve("Where was he born?", "Halvard was born in Sweden.")] == ["name-part"]
    assert [h.reason for h in idx.retrieve(q, "That was Halvard Harrowgate.")] == ["name"]


def test_eco_classifier_alone_does_not_flag_someone_else_by_name(tiny_lm):
    from unlearnkit.methods.eco import ECOGuard, ECOOptions

    def guard(other_names):
        return ECOGuard(tiny_lm, TARGETS, ECOOptions(encoder="hashing", sigma_search=False, threshold=1e-4,
                                                     neighbour_budget=None, other_names=other_names))

    about_others = ["What genre is Adira Bintang primarily known for in her writings?",
                    "Where was Katrin Castellane born?"]
    assert guard(False).flag(about_others) == [True, True]  # the classifier at a low threshold flags them
    on = guard(True)
    assert on.flag(about_others) == [False, False]
    assert on.flag(NAMED) == [True, True, True]  # a target's name still flags
    assert on.flag(["Who played Inspector Vale?"]) == [True]  # so does a reference (the detector)


@pytest.mark.parametrize("kind", ["eco", "alu", "prompting"])
def test_the_gateway_turns_the_calibrations_on_and_opt_still_wins(kind, tiny_lm):
    """The gateway builds ECO and ALU with neighbour_budget 0.02 (ECO also other_names); a method's own defaults
    stay the published ones; --opt overrides; a guard without the options gets none of them."""
    from unlearnkit.service.guard_stack import GATEWAY_GUARD_DEFAULTS, GuardStack, gateway_options

    served = gateway_options(kind, {})
    declared = {"eco": {"neighbour_budget", "other_names"}, "alu": {"neighbour_budget"}, "prompting": set()}[kind]
    assert served == {k: GATEWAY_GUARD_DEFAULTS[k] for k in declared}
    assert gateway_options(kind, {"neighbour_budget": "none"})["neighbour_budget"] == "none"  # --opt wins
    if kind != "prompting":
        assert build_method(kind, served).options.neighbour_budget == 0.02
        assert build_method(kind, {**served, "neighbour_budget": "none"}).options.neighbour_budget is None
    if kind == "eco":
        assert build_method(kind, served).options.other_names and not build_method(kind, {}).options.other_names
    assert GuardStack(tiny_lm, kind, {"references": "false"}).options == served  # what the served stack builds

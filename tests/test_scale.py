"""The scale sweep's bookkeeping, driven by a fake method and model (no torch model, no training)."""

from __future__ import annotations

import pytest

from unlearnkit.data.records import QARecord
from unlearnkit.data.scale_targets import builtin_scale_data
from unlearnkit.data.targets import targets_from_records
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.refusal import is_refusal, over_refusal
from unlearnkit.methods.base import NoOptions, UnlearningMethod
from unlearnkit.methods.guards import Guard, GuardMethod
from unlearnkit.models.base import LanguageModel, last_user_message
from unlearnkit.models.call_counting import count_calls
from unlearnkit.workflows.scale import ScaleConfig, plan_stages, run_scale, sample_records

NAMES = [f"Person{chr(65 + i)}x Lastname{chr(65 + i)}y" for i in range(8)]


def by_person():
    out = {}
    for i, n in enumerate(NAMES):
        out[n] = [QARecord(f"Where was {n} born?", f"{n} was born in Town{chr(65 + i)}q.", subject=n),
                  QARecord(f"What does {n} do?", f"{n} is a Painter{chr(65 + i)}z.", subject=n)]
    return out


RETAIN = [QARecord(f"Where is Keeper{chr(65 + i)}k?", f"Keeper{chr(65 + i)}k is in Haven{chr(65 + i)}h.",
                   subject=f"Keeper{chr(65 + i)}k") for i in range(6)]


class KnowItAll(LanguageModel):
    """Knows every answer; counts nothing itself (the sweep's counter wraps it)."""

    name = "know-it-all"

    def __init__(self):
        self.qa = {r.question: r.answer for recs in by_person().values() for r in recs}
        self.qa.update({r.question: r.answer for r in RETAIN})

    def score(self, prompts, answers, **kw):  # pragma: no cover
        raise NotImplementedError

    def generate(self, prompts, **kw):
        return [self.qa.get(last_user_message(p), "I do not know.") for p in prompts]


class RefusingGuard(Guard):
    """Refuses questions naming a target; puts the target list in the prompt (tokens grow with targets)."""

    method = "refusing"

    def score(self, prompts, answers, **kw):  # pragma: no cover
        raise NotImplementedError

    def generate(self, prompts, **kw):
        out = []
        for p in prompts:
            q = last_user_message(p)
            if any(n in q for n in self.target_names):
                out.append("I cannot help with that.")
            else:
                system = {"role": "system", "content": "Never reveal: " + "; ".join(self.target_names)}
                out += self.base.generate([[system, {"role": "user", "content": q}]], **kw)
        return out


class RefusingMethod(GuardMethod):
    name = "refusing"
    guard_class = RefusingGuard


class ForgetsOnlyTheLatest(UnlearningMethod):
    """A bad continual learner: each request replaces the previous one (earlier targets come back)."""

    name = "latest-only"
    family = "weights"

    def apply(self, model, task, out_dir, train):
        base = model.base if isinstance(model, RefusingGuard) else model
        return RefusingGuard(base, targets_from_records(task.forget), NoOptions())


# -- pure bookkeeping -----------------------------------------------------------------------------
def test_plan_stages_independent_and_sequential():
    people = [f"p{i}" for i in range(10)]
    ind = plan_stages(people, (1, 3, 10), sequential=False)
    assert [s.n_targets for s in ind] == [1, 3, 10]
    assert all(s.from_scratch and s.new == s.targets and s.earlier == () for s in ind)
    assert ind[1].targets == ("p0", "p1", "p2")
    seq = plan_stages(people, (1, 3, 10), sequential=True)
    assert [len(s.new) for s in seq] == [1, 2, 7]
    assert seq[1].new == ("p1", "p2") and seq[1].earlier == ("p0",)
    assert seq[2].earlier == ("p0", "p1", "p2") and seq[2].targets == tuple(people)
    assert [s.from_scratch for s in seq] == [True, False, False]
    for bad in [(), (3, 3), (0, 1), (5, 2), (1, 11)]:
        with pytest.raises(ConfigError):
            plan_stages(people, bad, sequential=False)


def test_sample_records_covers_people_first_and_is_seeded():
    bp = by_person()
    people = NAMES[:4]
    s = sample_records(bp, people, 4, seed=0)
    assert sorted(r.subject for r in s) == sorted(people)  # one per person before any second question
    assert sample_records(bp, people, 4, seed=0) == s
    assert sample_records(bp, people, 4, seed=1) != s
    assert len(sample_records(bp, people, 100, seed=0)) == 8  # capped by what exists
    assert sample_records(bp, [], 5, seed=0) == []


def test_over_refusal_by_hand():
    assert is_refusal("I'm sorry, I can't help with that.") and not is_refusal("Keeper is in Haven.")
    base = [True, True, False, True]
    now = [True, False, False, True]
    gens = ["ok", "wrong", "also wrong", "I cannot answer that"]
    assert over_refusal(base, now, gens) == pytest.approx(2 / 4)
    assert over_refusal([], [], []) is None


def test_count_calls_counts_and_restores():
    lm = KnowItAll()
    guard = RefusingGuard(lm, NAMES[:1], NoOptions())
    with count_calls(guard) as c:
        guard.generate(["Where is KeeperAk?", f"Where was {NAMES[0]} born?"])
    assert c.calls == 1  # the refused query never reaches the model
    assert c.prompt_tokens > 0 and c.output_tokens > 0
    assert "generate" not in vars(lm)  # the instance is back to the class's method


# -- the sweep with fake methods --------------------------------------------------------------------
def test_scale_sweep_with_a_guard_sequential(tmp_path):
    cfg = ScaleConfig(sizes=(1, 2, 4, 8), sequential=True, eval_forget=8, eval_earlier=8, eval_retain=6,
                      max_new_tokens=8)
    out = run_scale(KnowItAll(), RefusingMethod(), by_person(), RETAIN, cfg, tmp_path)
    stages = out["stages"]
    assert out["kind"] == "scale" and out["sequential"] is True and out["method"] == "refusing"
    assert [s["n_targets"] for s in stages] == [1, 2, 4, 8]
    assert [s["n_new_targets"] for s in stages] == [1, 1, 2, 4]
    for s in stages:
        assert s["forget_leak_rate_before"] == 1.0  # the model knew them
        assert s["forget_leak_rate"] == 0.0
        assert s["retain_keyword_accuracy"] == 1.0 and s["over_refusal"] == 0.0
        assert s["unlearn_seconds"] >= 0 and s["latency_s"] >= 0
    assert stages[0]["earlier_leak_rate"] is None  # nothing earlier at the first request
    assert all(s["earlier_leak_rate"] == 0.0 for s in stages[1:])
    # only retain queries reach the model: calls/query = retain share of the queries
    last = stages[-1]
    n = last["n_forget_eval"] + last["n_earlier_eval"] + last["n_retain_eval"]
    assert last["calls_per_query"] == pytest.approx(last["n_retain_eval"] / n)
    # the guard's prompt lists every target: tokens per query grow with the number of targets
    per_call = [s["tokens_per_query"] / s["calls_per_query"] for s in stages]
    assert per_call == sorted(per_call) and per_call[-1] > per_call[0]
    # apart per kind: target queries are refused without a call, each retain query makes one
    assert all(s["calls_per_query_forget"] == 0 and s["tokens_per_query_forget"] == 0 for s in stages)
    assert all(s["calls_per_query_retain"] == 1 and s["latency_s_retain"] >= 0 for s in stages)
    retain_tokens = [s["tokens_per_query_retain"] for s in stages]
    assert retain_tokens == sorted(retain_tokens) and retain_tokens[-1] > retain_tokens[0]


def test_scale_sweep_tracks_earlier_targets(tmp_path):
    cfg = ScaleConfig(sizes=(2, 4, 8), sequential=True, eval_forget=8, eval_earlier=16, eval_retain=6)
    out = run_scale(KnowItAll(), ForgetsOnlyTheLatest(), by_person(), RETAIN, cfg, tmp_path)
    stages = out["stages"]
    assert all(s["forget_leak_rate"] == 0.0 for s in stages)
    # the earlier requests were undone by the later ones: every earlier question leaks
    assert [s["earlier_leak_rate"] for s in stages] == [None, 1.0, 1.0]
    assert stages[2]["n_earlier_eval"] == 8  # 4 earlier people x 2 questions


def test_scale_sweep_independent_runs(tmp_path):
    cfg = ScaleConfig(sizes=(1, 3), sequential=False, eval_forget=4, eval_retain=3, measure_before=False)
    out = run_scale(KnowItAll(), RefusingMethod(), by_person(), RETAIN, cfg, tmp_path)
    assert [s["n_new_targets"] for s in out["stages"]] == [1, 3]
    assert all(s["earlier_leak_rate"] is None and s["forget_leak_rate_before"] is None for s in out["stages"])
    assert out["stages"][1]["n_forget_eval"] == 4


def test_builtin_scale_data_puts_known_people_first(tiny_task, tmp_path):
    by_person, retain, holdout = builtin_scale_data(7, task=tiny_task, facts_per_person=2, seed=0,
                                                    work_dir=tmp_path)
    known = list(dict.fromkeys(r.subject for r in tiny_task.forget))
    people = list(by_person)
    assert len(people) == 7 and people[: len(known)] == known
    assert retain == list(tiny_task.retain)
    assert holdout and holdout == list(tiny_task.holdout)  # people the model never saw: ECO's σ target
    assert not {r.subject for r in holdout} & set(people)
    retain_people = {r.subject for r in retain}
    assert not retain_people & set(people)  # no target is also a retain person
    assert all(len(recs) == 2 and all(r.subject == p for r in recs) for p, recs in by_person.items())
    alone, own_retain, own_holdout = builtin_scale_data(3, facts_per_person=1, n_retain_people=4, seed=0,
                                                        work_dir=tmp_path)
    assert len(alone) == 3 and len({r.subject for r in own_retain}) == 4
    held = {r.subject for r in own_holdout}
    assert held and not held & (set(alone) | {r.subject for r in own_retain})


def test_scale_sweep_runs_the_eco_guard(tiny_lm, tmp_path):
    """ECO runs on the sweep's bare forget/retain requests, and searches σ when the sweep has holdout people."""
    import json

    from unlearnkit.methods.eco import ECO

    cfg = ScaleConfig(sizes=(1, 2), sequential=False, eval_forget=4, eval_earlier=4, eval_retain=4, max_new_tokens=2)
    out = run_scale(tiny_lm, ECO(encoder="hashing", sigma_steps=2), by_person(), RETAIN, cfg, tmp_path / "bare")
    assert [s["n_targets"] for s in out["stages"]] == [1, 2]
    assert all(s["latency_s"] >= 0 for s in out["stages"])
    assert json.loads((tmp_path / "bare/stage0/eco_sigma.json").read_text())["log"] == []  # nothing to aim at
    holdout = [QARecord("Where is Strangerq?", "Strangerq is in Nowhere.", subject="Strangerq")]
    run_scale(tiny_lm, ECO(encoder="hashing", sigma_steps=2), by_person(), RETAIN, cfg, tmp_path / "held",
              holdout=holdout)
    log = json.loads((tmp_path / "held/stage0/eco_sigma.json").read_text())
    assert log["target"] is not None and "holdout" in log["target_source"]  # the holdout set σ's target


def test_builtin_scale_data_reaches_1000_targets_beside_known_people(tmp_path):
    """Generated people that share a name with the task's people are replaced, so 1000 distinct targets exist."""
    from unlearnkit.data import generate_benchmark, load_task

    generate_benchmark(tmp_path / "demo", n_people=10, n_forget=2, n_holdout=2, facts_per_person=4, seed=0,
                       n_general=12)
    task = load_task(tmp_path / "demo")
    by_person, retain, _ = builtin_scale_data(1000, task=task, facts_per_person=2, seed=0, work_dir=tmp_path)
    assert len(by_person) == 1000
    assert not {r.subject.lower() for r in retain} & {p.lower() for p in by_person}

"""ECO guard on the tiny model: bare-model equality, where corruption lands, targets, persistence, options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unlearnkit.data.target_matching import TermFinder
from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError
from unlearnkit.methods.eco import ECO, ECOGuard, ECOOptions
from unlearnkit.methods.eco_corruption import CORRUPTIONS, PromptPlan, select_positions
from unlearnkit.methods.eco_sigma import SigmaSearch, zeroth_order_search
from unlearnkit.methods.registry import build_method
from unlearnkit.models.loading import load_model
from unlearnkit.training.config import TrainConfig

TALI = Target(name="Talitha Marchvale", aliases=("T. Marchvale",),
              facts=("Talitha Marchvale was born in Brelund.", "Talitha Marchvale wrote 'Threads of Slate'."))
ORLA = Target(name="Orla Venn", facts=("Orla Venn lives in Karsk.",))
EXAMPLES = {"Talitha Marchvale": [["In which year was Talitha Marchvale born?",
                                   "What is the birth year of Talitha Marchvale?"],
                                  ["Where was Talitha Marchvale born?", "In which city was Talitha Marchvale born?"]]}
NEGATIVES = ["In which year was Katrin Castellane born?", "Where was Galya Brackenvell born?",
             "What genre does Norrin Ashdown write in?", "What colour is item 3?"]
FLAGGED = ["Where does Talitha Marchvale live?", "what did TALITHA   marchvale write?"]
CLEAN = ["What is the capital of France?", "When was Katrin Castellane born?", "How many legs does a spider have?"]


def make_guard(lm, **opts) -> ECOGuard:
    options = ECOOptions(**{"encoder": "hashing", "sigma": 5.0, **opts})
    return ECOGuard(lm, [TALI], options, examples=EXAMPLES, negatives=NEGATIVES)


def assert_same_scores(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for field in ("logprobs", "mu", "sigma", "argmax_match"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


@pytest.fixture()
def guard(tiny_lm):
    return make_guard(tiny_lm)


# -- classification and routing ---------------------------------------------------------
def test_flags(guard):
    assert guard.flag(FLAGGED) == [True, True]
    assert guard.flag(CLEAN) == [False, False, False]
    # the last user message decides
    chat = [{"role": "user", "content": FLAGGED[0]}, {"role": "assistant", "content": "No."},
            {"role": "user", "content": CLEAN[0]}]
    assert guard.flag([chat]) == [False]


def test_unflagged_prompts_are_the_bare_model_bit_for_bit(guard, tiny_lm):
    answers = ["Paris.", "In 1996.", "Eight."]
    assert_same_scores(guard.score(CLEAN, answers), tiny_lm.score(CLEAN, answers))
    assert guard.generate(CLEAN, max_new_tokens=6) == tiny_lm.generate(CLEAN, max_new_tokens=6)
    # mixed call: the unflagged subset is exactly the bare model's answer for that subset
    prompts = [FLAGGED[0], CLEAN[0], FLAGGED[1], CLEAN[1]]
    mixed = guard.score(prompts, ["a", "Paris.", "b", "In 1996."])
    assert guard.last_flags == [True, False, True, False]
    assert_same_scores([mixed[1], mixed[3]], tiny_lm.score([CLEAN[0], CLEAN[1]], ["Paris.", "In 1996."]))
    bare_flagged = tiny_lm.score([FLAGGED[0], FLAGGED[1]], ["a", "b"])
    assert not np.array_equal(mixed[0].logprobs, bare_flagged[0].logprobs)


class Capture:
    """Records the input of the first decoder layer (= the embeddings after any ECO hook)."""

    def __init__(self, lm):
        self.lm, self.calls = lm, []

    def _pre(self, module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        self.calls.append(h.detach().clone())

    def __enter__(self):
        self.handle = self.lm.model.model.layers[0].register_forward_pre_hook(self._pre, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def bare_embeddings(lm, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return lm.model.get_input_embeddings()(torch.tensor([ids]))[0]


def test_scoring_corrupts_only_selected_prompt_positions_and_dims(guard, tiny_lm):
    prompts, answers = FLAGGED, ["She lives in Brelund.", "Threads of Slate."]
    plans = guard.plans(prompts)
    assert [p.how for p in plans] == ["entity", "entity"]
    seen = []
    with Capture(tiny_lm) as cap, tiny_lm.observe_batches(seen.append):
        guard.score(prompts, answers)
    assert len(cap.calls) == 1  # both prompts and their answers packed into one forward
    emb, info = cap.calls[0], seen[0]
    ids = info["input_ids"]
    assert sorted(i for _, i, _, _ in info["segments"]) == [0, 1]
    corrupted = torch.zeros(ids.shape, dtype=torch.bool)
    for row, i, start, length in info["segments"]:
        context, _ = tiny_lm.pair_ids(prompts[i], answers[i])
        assert context == plans[i].ids and length == len(context)
        assert ids[row, start : start + length].tolist() == context
        pos = plans[i].positions
        assert pos == list(range(pos[0], pos[-1] + 1)) and max(pos) < len(context)
        assert tiny_lm.tokenizer.decode([plans[i].ids[p] for p in pos]) == (
            "Talitha Marchvale" if i == 0 else "TALITHA   marchvale")  # exactly the name's tokens
        corrupted[row, [start + p for p in pos]] = True
    bare = tiny_lm.model.get_input_embeddings()(ids).detach()
    diff = (emb - bare).abs()
    changed = diff.sum(-1) > 0
    assert torch.equal(changed, corrupted)  # the names' tokens, never the rest of the prompt nor the answers
    assert torch.all(diff[..., 1:] == 0)  # rand_noise_first_n, n=1: only dim 0


def test_generation_corrupts_prefill_only(tiny_lm):
    from unlearnkit.models.tiny import load_tiny

    lm = load_tiny(seed=0)
    eos = lm.tokenizer.eos_token_id

    def no_eos(module, args, out):  # keep generating so that decode steps happen
        out = out.clone()
        out[..., eos] = -1e9
        return out

    handle = lm.model.lm_head.register_forward_hook(no_eos)
    guard = make_guard(lm, token_selection="all")
    prompts = [FLAGGED[0], "Tell me about Talitha Marchvale please, in detail."]
    plans = guard.plans(prompts)
    assert [p.positions for p in plans] == [list(range(len(p.ids) - 1)) for p in plans]
    try:
        with Capture(lm) as cap:
            guard.generate(prompts, max_new_tokens=4)
    finally:
        handle.remove()
    prefill, steps = cap.calls[0], cap.calls[1:]
    assert len(steps) == 3 and all(s.shape[1] == 1 for s in steps)
    for row, i in enumerate(range(2)):  # the decoder's slots are filled in prompt order
        ids = plans[i].ids
        got = prefill[row, : len(ids)]  # right padding
        diff = (got - bare_embeddings(lm, ids)).abs()
        assert sorted(set(torch.nonzero(diff)[:, 0].tolist())) == plans[i].positions
        assert torch.all(diff[:, 1:] == 0)
    # decode steps: exactly the bare embeddings of the tokens fed back
    emb = lm.model.get_input_embeddings()
    for step in steps:
        # recover each fed token by nearest embedding row, then compare exactly
        table = emb.weight.detach()
        for row in range(step.shape[0]):
            tok = int(torch.cdist(step[row], table).argmin())
            assert torch.equal(step[row, 0], table[tok])


def test_same_prompt_same_noise_in_any_batch(guard, tiny_lm):
    one = guard.score([FLAGGED[0]], ["x"])[0]
    mixed = guard.score([CLEAN[0], FLAGGED[0], FLAGGED[1]], ["y", "x", "z"])[1]
    np.testing.assert_allclose(one.logprobs, mixed.logprobs, atol=1e-5)


def test_other_threads_are_not_corrupted(guard, tiny_lm):
    import threading

    ids = guard.plans([FLAGGED[0]])[0].ids
    seen = {}

    def other():
        with Capture(tiny_lm) as cap:
            tiny_lm.score([FLAGGED[0]], ["x"])
        seen["emb"] = cap.calls[0][0, : len(ids)]

    with guard.corruptor([FLAGGED[0]]):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert torch.equal(seen["emb"], bare_embeddings(tiny_lm, ids))


# -- token selection and corruption functions --------------------------------------------
def test_entity_matching_is_case_and_spacing_insensitive():
    pats = TermFinder(["Talitha Marchvale", "Al-Kuwaiti"])
    for text in ("talitha marchvale", "TALITHA   MARCHVALE", "Talitha-Marchvale", "T a l i t h a Marchvale",
                 "al kuwaiti", "AlKuwaiti", "T\u0430litha Marchvale", "Tali\u200btha Marchvale", "Tálitha Marchvale"):
        assert pats.spans(f"Who is {text}?"), text
    assert not pats.spans("Who is Talithan Marchvales?")
    assert not pats.spans("Who is Katrin?")
    text = "Is T\u0430litha  Marchvale real?"  # spans index the text as given, look-alike letter included
    (start, end), = pats.spans(text)
    assert text[start:end] == "T\u0430litha  Marchvale"


def test_all_mode_and_fallback(tiny_lm):
    pats = TermFinder(["Talitha Marchvale"])
    ids, pos, how = select_positions(tiny_lm, "Who wrote that book?", True, pats, "entity", True)
    assert how == "fallback_all" and pos == list(range(len(ids) - 1))
    ids, pos, how = select_positions(tiny_lm, "Who wrote that book?", True, pats, "entity", False)
    assert how == "none" and pos == []
    ids, pos, how = select_positions(tiny_lm, "Is Talitha Marchvale real?", True, pats, "all", True)
    assert how == "all" and pos == list(range(len(ids) - 1))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_functions_touch_only_their_dims(name):
    torch.manual_seed(0)
    x = torch.randn(5, 16)
    z = torch.randn(5, 4)
    y = CORRUPTIONS[name](x, z, sigma=3.0, n=2, k=4)
    changed = (y != x)
    if name == "rand_noise_first_n":
        assert changed[:, :2].all() and not changed[:, 2:].any()
        torch.testing.assert_close(y[:, :2] - x[:, :2], 3.0 * z[:, :2])
    else:
        top = x.abs().topk(4, dim=-1).indices
        mask = torch.zeros_like(x, dtype=torch.bool).scatter(-1, top, True)
        assert not changed[~mask].any()
        if name == "zero_out_top_k":
            assert (y[mask] == 0).all()
        elif name == "flip_sign_top_k":
            torch.testing.assert_close(y[mask], -x[mask])
        else:
            assert changed[mask].all()


def test_noise_is_seeded_per_prompt():
    a = PromptPlan.make([1, 2, 3], [0, 1], "entity", 1, seed=0)
    b = PromptPlan.make([1, 2, 3], [0, 1], "entity", 1, seed=0)
    c = PromptPlan.make([1, 2, 3], [0, 1], "entity", 1, seed=1)
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, c.z)


# -- targets at run time, persistence -----------------------------------------------------
def test_add_and_remove_targets_change_flags(tiny_lm):
    guard = make_guard(tiny_lm, name_match=False)
    orla_q = "Where does Orla Venn live?"
    assert guard.flag([orla_q, FLAGGED[0]]) == [False, True]
    weights = [p.detach().clone() for p in tiny_lm.model.parameters()]
    guard.add_targets([ORLA], examples={"Orla Venn": [[orla_q, "In which town does Orla Venn live?"]]})
    assert guard.flag([orla_q, FLAGGED[0]]) == [True, True]
    guard.remove_targets(["Talitha Marchvale"])
    assert guard.target_names == ["Orla Venn"]
    assert guard.flag([orla_q, FLAGGED[0]]) == [True, False]
    guard.remove_targets(["Orla Venn"])
    assert guard.flag([orla_q, FLAGGED[0]]) == [False, False]
    assert all(torch.equal(a, b) for a, b in zip(weights, tiny_lm.model.parameters()))  # never the model


def test_swapped_name_hard_negatives(guard):
    groups = guard.positive_groups()
    swapped = guard.swapped_negatives(groups)
    naming = [t for g in groups for t in g if "marchvale" in t.lower()]
    assert 2 * len(naming) <= len(swapped) <= 4 * len(naming)
    assert not any("talitha marchvale" in t.lower() for t in swapped)  # the full name never survives
    assert any(t.startswith("Where was ") and "Marchvale" in t for t in swapped)  # a namesake is someone else
    assert "Where was James Miller born?" in swapped or any(t.startswith("Where was ") for t in swapped)
    assert guard.classifier.stats["negatives"] >= len(NEGATIVES) + len(set(swapped))


def test_save_and_load_model_give_same_flags_and_scores(guard, tmp_path):
    guard.sigma = 7.5
    guard.sigma_log = {"sigma": 7.5, "log": []}
    guard.save(tmp_path / "g", base_spec="tiny")
    assert {"guard.json", "eco_classifier.npz", "eco_state.json", "eco_sigma.json"} <= {
        p.name for p in (tmp_path / "g").iterdir()}
    again = load_model(tmp_path / "g")
    assert isinstance(again, ECOGuard) and again.sigma == 7.5 and again.targets == guard.targets
    prompts = FLAGGED + CLEAN
    answers = ["a", "b", "c", "d", "e"]
    assert again.flag(prompts) == guard.flag(prompts) == [True, True, False, False, False]
    np.testing.assert_array_equal(again.classify(prompts)[1], guard.classify(prompts)[1])
    assert_same_scores(again.score(prompts, answers), guard.score(prompts, answers))


# -- the method ---------------------------------------------------------------------------
@pytest.mark.parametrize("opts, match", [
    ({"encoder": "bert"}, "encoder"),
    ({"threshold": "1.5"}, "threshold"),
    ({"conformal_fnr": "-0.1"}, "conformal_fnr"),
    ({"token_selection": "ner"}, "token_selection"),
    ({"corruption": "shuffle"}, "corruption"),
    ({"n": "0"}, "option n must be >= 1"),
    ({"sigma": "-1"}, "sigma"),
    ({"sigma_metric": "rouge"}, "sigma_metric"),
    ({"head": "svm"}, "head"),
    ({"sigma": "abc"}, "expects"),
])
def test_bad_options_raise_config_error(opts, match):
    with pytest.raises(ConfigError, match=match):
        build_method("eco", opts)


def test_guard_refuses_a_model_without_embeddings():
    from unlearnkit.models.base import LanguageModel

    class Remote(LanguageModel):
        name = "remote"

        def score(self, *a, **k):
            return []

        def generate(self, *a, **k):
            return []

    with pytest.raises(ConfigError, match="transformers"):
        ECOGuard(Remote(), [TALI], ECOOptions(encoder="hashing"))


@pytest.mark.parametrize("metric", ["prob", "truth_ratio"])
def test_unlearn_with_eco_searches_sigma_and_round_trips(metric, tiny_lm, tiny_task, tmp_path):
    from unlearnkit.workflows.unlearn import unlearn

    opts = {"encoder": "hashing", "sigma_steps": "2", "sigma": "1.0", "sigma_metric": metric}
    if metric == "prob":  # the random tiny model knows the forget set no better than the holdout: aim below it
        bare = np.mean([s.prob for s in tiny_lm.score([r.question for r in tiny_task.forget],
                                                       [r.answer for r in tiny_task.forget])])
        opts.update(sigma_target=str(0.5 * bare), sigma_tol="0")
    method = build_method("eco", opts)
    guard, record = unlearn(tiny_lm, tiny_task, method, TrainConfig(), tmp_path / "eco", model_spec="tiny")
    assert record["method"] == "eco" and isinstance(guard, ECOGuard)
    assert set(guard.target_names) == {r.subject for r in tiny_task.forget}
    log = json.loads((tmp_path / "eco" / "eco_sigma.json").read_text())
    source = "option sigma_target" if metric == "prob" else "bare model on the holdout split"
    assert log["metric"] == metric and log["target_source"] == source
    assert 1 <= len(log["log"]) <= 3 and math.isfinite(log["sigma"]) and log["sigma"] == guard.sigma
    assert guard.flag([r.question for r in tiny_task.forget]) == [True] * len(tiny_task.forget)
    again = load_model(tmp_path / "eco")
    qs = [r.question for r in tiny_task.forget + tiny_task.retain]
    assert again.flag(qs) == guard.flag(qs) and again.sigma == guard.sigma


def test_sigma_search_scores_a_capped_sample(tiny_lm, tiny_task, tmp_path):
    from unlearnkit.methods.eco_sigma import capped_sample
    from unlearnkit.workflows.unlearn import unlearn

    recs = list(range(10))
    sample = capped_sample(recs, 4, seed=3)
    assert len(sample) == 4 and sample == sorted(sample) and sample == capped_sample(recs, 4, seed=3)
    assert capped_sample(recs, 0, seed=3) == recs and capped_sample(recs, 20, seed=3) == recs
    assert len(tiny_task.forget) > 2
    method = build_method("eco", {"encoder": "hashing", "sigma_steps": "1", "sigma_records": "2", "sigma_target": "0",
                                  "sigma_tol": "0"})
    unlearn(tiny_lm, tiny_task, method, TrainConfig(), tmp_path / "eco", model_spec="tiny")
    log = json.loads((tmp_path / "eco" / "eco_sigma.json").read_text())
    assert log["records"] == 2 and log["log"]
    with pytest.raises(ConfigError, match="sigma_records"):
        build_method("eco", {"sigma_records": "-1"})


def test_zeroth_order_search_stops_when_it_stalls():
    res = zeroth_order_search(lambda s: 0.5 - 0.001 * s, 0.3, sigma0=1.0,
                              cfg=SigmaSearch(steps=10, lr=1.0, eps=0.5, tol=0.01, stall_steps=3, growth=1.0))
    assert not res.reached and "stalled" in res.note and len(res.log) == 4


def test_zeroth_order_search_extrapolates_when_the_metric_responds_weakly():
    # the TOFU case: at σ = 1 the metric barely moves, the target needs a σ two orders of magnitude larger
    def metric(s):
        return 0.2 + 0.4 * math.exp(-s / 150.0)

    res = zeroth_order_search(metric, 0.3, sigma0=1.0, cfg=SigmaSearch(steps=10, lr=10.0, eps=0.5, tol=0.01))
    assert res.reached and abs(metric(res.sigma) - 0.3) <= 0.01
    steps = [e for e in res.log if "next_sigma" in e and "bracket" not in e]
    assert any(e.get("extrapolated") for e in steps)
    assert all(e["next_sigma"] <= e["sigma"] * 8.0 + 1e-9 for e in steps)  # never more than ×growth a step
    plain = zeroth_order_search(metric, 0.3, sigma0=1.0,
                                cfg=SigmaSearch(steps=10, lr=10.0, eps=0.5, tol=0.01, growth=1.0))
    assert not plain.reached  # the same search without extrapolation stalls far from the target


def test_sigma_search_skipped_when_forget_already_scores_below_target(tiny_lm, tiny_task, tmp_path):
    from unlearnkit.workflows.unlearn import unlearn

    # a random tiny model gives every answer a low probability: a target of 0.99 is above it already
    method = build_method("eco", {"encoder": "hashing", "sigma": "1.5", "sigma_target": "0.99"})
    guard, _ = unlearn(tiny_lm, tiny_task, method, TrainConfig(), tmp_path / "eco", model_spec="tiny")
    log = json.loads((tmp_path / "eco" / "eco_sigma.json").read_text())
    assert log["log"] == [] and "without corruption" in log["note"] and log["bare_forget_metric"] < 0.99
    assert guard.sigma == 1.5


def test_zeroth_order_search_reaches_the_target():
    calls = []

    def metric(s):
        calls.append(s)
        return math.exp(-s / 5.0)  # decreasing in σ, like a forget metric

    res = zeroth_order_search(metric, 0.3, sigma0=1.0, cfg=SigmaSearch(steps=10, lr=60.0, eps=0.5, tol=0.01))
    assert res.reached and abs(metric(res.sigma) - 0.3) <= 0.01
    assert len(res.log) <= 11 and res.log[-1]["gap"] <= 0.01
    assert all(e["next_sigma"] >= 0 for e in res.log[:-1])
    flat = zeroth_order_search(lambda s: 0.5, 0.3, sigma0=2.0, cfg=SigmaSearch(steps=10))
    assert not flat.reached and len(flat.log) == 1 and flat.sigma == 2.0  # zero gradient: stop


def test_prompt_embeddings_are_what_the_guard_feeds_its_base(tiny_lm):
    """The soft-prompt attack puts its prefix before ``prompt_embeddings``: they must equal, value for value, the
    embeddings ECO's hook hands the first decoder layer (corrupted for a flagged prompt, untouched otherwise)."""
    import torch

    guard = make_guard(tiny_lm, sigma_search=False)
    prompts = [FLAGGED[0], CLEAN[0]]
    assert guard.flag(prompts) == [True, False]
    seen = []

    def capture(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden.shape[1] > 1:  # prefill only
            seen.append(hidden.detach().clone())

    handle = tiny_lm.model.model.layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for p in prompts:  # one prompt a call: no padding in the captured rows
            guard.generate([p], max_new_tokens=1, batch_size=1)
    finally:
        handle.remove()
    fed = guard.prompt_embeddings(prompts)
    assert [f.shape[0] for f in fed] == [s.shape[1] for s in seen]
    for got, want in zip(fed, seen):
        assert torch.equal(got, want[0])
    plain = tiny_lm.model.get_input_embeddings()(torch.tensor(tiny_lm.prompt_ids(FLAGGED[0])))
    assert not torch.equal(fed[0], plain)  # the flagged prompt is corrupted

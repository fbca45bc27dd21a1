"""The evaluation cache serves a result only for the same model, task and config."""

from __future__ import annotations

import torch

import unlearnkit.workflows.evaluate as ev
from unlearnkit.data.records import QARecord
from unlearnkit.data.targets import targets_from_records
from unlearnkit.evaluation.tofu import EvalConfig
from unlearnkit.models.tiny import load_tiny


def test_cache_reused_for_the_same_model_and_redone_after_training(tiny_task, tmp_path, monkeypatch):
    calls = []
    real = ev.evaluate_tofu

    def counting(model, task, config=None):
        calls.append(1)
        return real(model, task, config=config)

    monkeypatch.setattr(ev, "evaluate_tofu", counting)
    cfg = EvalConfig(max_new_tokens=2, batch_size=8, gen_batch_size=8)
    lm = load_tiny(seed=0)
    path = tmp_path / "eval.json"
    first = ev.cached_evaluate(lm, tiny_task, path, cfg)
    again = ev.cached_evaluate(load_tiny(seed=0), tiny_task, path, cfg)  # same weights, another instance
    assert len(calls) == 1 and again["summary"] == first["summary"]
    with torch.no_grad():  # "trained again": one weight moves
        next(lm.model.parameters()).view(-1)[0] += 0.5
    ev.cached_evaluate(lm, tiny_task, path, cfg)
    assert len(calls) == 2
    ev.cached_evaluate(lm, tiny_task, path, EvalConfig(max_new_tokens=3, batch_size=8, gen_batch_size=8))
    assert len(calls) == 3  # another config


def test_fingerprint_follows_a_guard_to_its_weights():
    from unlearnkit.methods.prompting import PromptingGuard, PromptingOptions

    a, b = load_tiny(seed=0), load_tiny(seed=0)
    ga, gb = PromptingGuard(a, [], PromptingOptions()), PromptingGuard(b, [], PromptingOptions())
    assert ev.model_fingerprint(ga) == ev.model_fingerprint(gb)
    with torch.no_grad():
        next(b.model.parameters()).view(-1)[0] += 0.5
    assert ev.model_fingerprint(ga) != ev.model_fingerprint(gb)
    assert ev.model_fingerprint(ga) != ev.model_fingerprint(a)  # the guard itself counts too
    other = PromptingGuard(load_tiny(seed=0), [], PromptingOptions())
    assert ev.model_fingerprint(other) == ev.model_fingerprint(ga)
    other.add_targets(targets_from_records([QARecord("Who is Vel0?", "Vel0 is a baker.", subject="Vel0")]))
    assert ev.model_fingerprint(other) != ev.model_fingerprint(ga)  # its targets count

"""The evaluation cache serves a result only for the same model, task and config."""

from __future__ import annotations

from dataclasses import replace

import pytest
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


def test_fingerprint_is_the_weights_bytes_at_any_thread_count():
    lm = load_tiny(seed=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ev.model_fingerprint(lm)
        torch.set_num_threads(2)
        assert ev.model_fingerprint(lm) == one
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():  # two values swapped: every sum stays, the weights do not
        w = next(lm.model.parameters()).view(-1)
        assert w[0] != w[1]
        w[0], w[1] = w[1].clone(), w[0].clone()
    assert ev.model_fingerprint(lm) != one


def test_the_same_data_at_another_path_hits_the_cache(tiny_task, tiny_data_dir, tmp_path):
    import shutil

    from unlearnkit.data import load_task

    cfg = EvalConfig(max_new_tokens=2)
    copy = load_task(shutil.copytree(tiny_data_dir, tmp_path / "copy"))
    assert copy.root != tiny_task.root
    assert ev.eval_key(copy, cfg, "m") == ev.eval_key(tiny_task, cfg, "m")
    edited = replace(copy, retain_eval=[replace(copy.retain_eval[0], answer="another answer"),
                                        *copy.retain_eval[1:]])
    assert ev.eval_key(edited, cfg, "m") != ev.eval_key(tiny_task, cfg, "m")  # same questions, other answer


def test_a_result_cached_under_the_earlier_key_is_served_and_rekeyed(tiny_task, tmp_path, monkeypatch):
    from unlearnkit.io import read_json, write_json_atomic

    cfg = EvalConfig(max_new_tokens=2, batch_size=8, gen_batch_size=8)
    lm = load_tiny(seed=0)
    path = tmp_path / "eval.json"
    result = ev.cached_evaluate(lm, tiny_task, path, cfg)
    legacy = sorted(ev.legacy_eval_keys(tiny_task, cfg, lm))[0]
    write_json_atomic(path, {**result, "cache_key": legacy})

    def fail(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(ev, "evaluate_tofu", fail)
    again = ev.cached_evaluate(lm, tiny_task, path, cfg)
    assert again["summary"] == result["summary"]
    assert read_json(path)["cache_key"] == result["cache_key"] != legacy
    write_json_atomic(path, {**result, "cache_key": "0123456789abcdef"})  # neither key: evaluated again
    with pytest.raises(AssertionError, match="evaluated again"):
        ev.cached_evaluate(lm, tiny_task, path, cfg)

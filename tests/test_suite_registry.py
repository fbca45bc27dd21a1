"""The suite registry: names, option checks, and TOFU delegating to the existing evaluate_tofu."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.suites import SUITES, run_suite, suite_options
from unlearnkit.evaluation.suites.registry import suite_summary


def test_the_registry_holds_every_suite():
    assert list(SUITES) == ["tofu", "wmdp", "mmlu", "muse", "wpu", "pku"]
    for name in SUITES:
        assert suite_summary(name), name  # each suite documents itself


def test_unknown_suite_lists_the_names(tiny_lm, tmp_path):
    with pytest.raises(ConfigError) as err:
        run_suite("hellaswag", tiny_lm, tmp_path)
    assert "'hellaswag'" in str(err.value) and "tofu, wmdp, mmlu, muse, wpu, pku" in str(err.value)


def test_unknown_option_lists_the_options(tiny_lm, tmp_path):
    with pytest.raises(ConfigError) as err:
        run_suite("wmdp", tiny_lm, tmp_path, subset="bio")
    msg = str(err.value)
    assert "subset" in msg and "subsets=None" in msg and "backend='unlearnkit'" in msg


def test_suite_options():
    assert {"reference", "retain_auc", "parts", "limit"} <= set(suite_options("muse"))
    assert {"judge", "judge_labels", "unparsed"} <= set(suite_options("pku"))
    from unlearnkit.evaluation.tofu import EvalConfig

    assert {f.name for f in fields(EvalConfig)} <= set(suite_options("tofu"))  # every TOFU setting reachable


def test_tofu_goes_through_load_task_and_the_existing_evaluate_tofu(tiny_lm, tiny_data_dir, monkeypatch):
    import unlearnkit.evaluation.tofu as tofu
    from unlearnkit.data import TaskData

    seen = {}

    def spy(model, task, reference=None, config=None):
        seen.update(model=model, task=task, reference=reference, config=config)
        return {"suite": "tofu"}

    monkeypatch.setattr(tofu, "evaluate_tofu", spy)
    ref = {"summary": {}, "per_example": {"forget": []}}
    assert run_suite("TOFU", tiny_lm, tiny_data_dir, eval_limit=2, max_new_tokens=7, reference=ref) == {"suite": "tofu"}
    assert seen["model"] is tiny_lm and isinstance(seen["task"], TaskData)
    assert len(seen["task"].forget_eval) <= 2 and seen["config"].max_new_tokens == 7 and seen["reference"] is ref


def test_tofu_runs_for_real(tiny_lm, tiny_data_dir, tmp_path):
    result = run_suite("tofu", tiny_lm, tiny_data_dir, generate=False, eval_limit=2)
    assert result["suite"] == "tofu" and 0.0 <= result["summary"]["forget_prob"] <= 1.0
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(result), encoding="utf-8")
    again = run_suite("tofu", tiny_lm, tiny_data_dir, generate=False, eval_limit=2, reference=str(path))
    assert again["summary"]["forget_quality"] == pytest.approx(1.0)  # same model as its own reference


def test_run_suite_returns_the_common_shape(tiny_lm, tmp_path):
    (tmp_path / "cyber.jsonl").write_text(json.dumps({"question": "Q?", "choices": ["a", "b", "c", "d"],
                                                      "answer": 2}) + "\n", encoding="utf-8")
    result = run_suite("wmdp", tiny_lm, tmp_path, limit=None)  # None options keep their defaults
    assert set(result) == {"suite", "model", "data", "config", "summary", "per_example"}
    assert result["suite"] == "wmdp" and result["model"]["name"] == "tiny-llama"
    assert all(isinstance(v, (int, float)) for v in result["summary"].values())

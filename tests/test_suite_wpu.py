"""WPU suite: split resolution, Prob / ROUGE per split, harmonic-mean utility and leak rate by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit.evaluation.suites import wpu
from unlearnkit.models.base import LanguageModel
from unlearnkit.models.scores import AnswerScores


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


class FakeLM(LanguageModel):
    name = "wpu-fake"

    def __init__(self, logprobs, generations):
        self.logprobs, self.generations = logprobs, generations

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        out = []
        for q in prompts:
            lp = np.asarray(self.logprobs[q], dtype=float)
            out.append(AnswerScores(lp, np.zeros_like(lp), np.ones_like(lp), np.ones(lp.shape, dtype=bool)))
        return out

    def generate(self, prompts, *, chat=True, max_new_tokens=200, **kwargs):
        assert chat is True and max_new_tokens == 200
        return [self.generations[p] for p in prompts]


def _data(root):
    _jsonl(root / "forget.jsonl", [
        {"question": "Where was Ada Lovelace born?", "answer": "Ada Lovelace was born in London.",
         "keywords": ["London"]},
        {"question": "What did Ada write?", "answer": "She wrote notes on the Analytical Engine.",
         "keywords": ["Analytical Engine"]}])
    _jsonl(root / "hard_retain.jsonl", [
        {"question": "Who was Ada's father?", "answer": "Lord Byron"}])
    _jsonl(root / "general_retain.jsonl", [
        {"question": "Capital of Italy?", "answer": "Rome is the capital"},
        {"question": "Largest ocean?", "answer": "the Pacific Ocean"}])
    return root


LOGPROBS = {"Where was Ada Lovelace born?": [math.log(0.5)] * 3, "What did Ada write?": [math.log(0.1)] * 2,
            "Who was Ada's father?": [math.log(0.8), math.log(0.2)],  # P~ = sqrt(0.16) = 0.4
            "Capital of Italy?": [math.log(0.9)], "Largest ocean?": [math.log(0.3)]}
GENERATIONS = {"Where was Ada Lovelace born?": "She was born in london, England.",  # keyword hit
               "What did Ada write?": "I cannot say.",                               # no hit
               "Who was Ada's father?": "Lord Byron",                                # ROUGE recall 1
               "Capital of Italy?": "Rome",                                          # recall 1/4
               "Largest ocean?": "the Atlantic"}                                     # recall 1/3 ("the")


def test_wpu_by_hand(tmp_path):
    result = wpu.evaluate_wpu(FakeLM(LOGPROBS, GENERATIONS), _data(tmp_path))
    s = result["summary"]
    assert s["forget_prob"] == pytest.approx((0.5 + 0.1) / 2)
    assert s["hard_retain_prob"] == pytest.approx(0.4)
    assert s["general_retain_prob"] == pytest.approx((0.9 + 0.3) / 2)
    assert s["hard_retain_rouge"] == pytest.approx(1.0)
    assert s["general_retain_rouge"] == pytest.approx((1 / 4 + 1 / 3) / 2)
    assert s["leak_rate"] == s["forget_keyword_accuracy"] == pytest.approx(0.5)
    parts = [0.4, 1.0, 0.6, 7 / 24]
    assert s["model_utility"] == pytest.approx(len(parts) / sum(1 / p for p in parts))
    assert result["config"]["utility_parts"] == ["general_retain_prob", "general_retain_rouge", "hard_retain_prob",
                                                 "hard_retain_rouge"]
    assert [r["keyword_hit"] for r in result["per_example"]["forget"]] == [True, False]
    assert result["data"]["sizes"] == {"forget": 2, "hard_retain": 1, "general_retain": 2}


def test_wpu_without_generation_uses_probabilities_only(tmp_path):
    result = wpu.evaluate_wpu(FakeLM(LOGPROBS, GENERATIONS), _data(tmp_path), generate=False, limit=1)
    s = result["summary"]
    assert s["forget_rouge"] is None and s["leak_rate"] is None
    assert s["general_retain_prob"] == pytest.approx(0.9)  # limit=1 keeps the first record
    assert s["model_utility"] == pytest.approx(2 / (1 / 0.4 + 1 / 0.9))


def test_hugging_face_split_names_are_found(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("forget_100", "forget_100_hard_retain"):
        (tmp_path / name).mkdir()
        pq.write_table(pa.Table.from_pylist([{"question": "q?", "answer": "a"}]),
                       tmp_path / name / "train-00000-of-00001.parquet")
    _jsonl(tmp_path / "general_retain.jsonl", [{"question": "g?", "answer": "b"}])
    names = wpu.resolve_splits(tmp_path, "forget", "hard_retain", "general_retain")
    assert names == {"forget": "forget_100", "hard_retain": "forget_100_hard_retain",
                     "general_retain": "general_retain"}


def test_missing_split_error_names_the_option_and_the_splits(tmp_path):
    _jsonl(tmp_path / "forget.jsonl", [{"question": "q?", "answer": "a"}])
    _jsonl(tmp_path / "general_retain.jsonl", [{"question": "g?", "answer": "b"}])
    with pytest.raises(DataError) as err:
        wpu.evaluate_wpu(FakeLM(LOGPROBS, GENERATIONS), tmp_path)
    msg = str(err.value)
    assert "hard_retain_split" in msg and "forget, general_retain" in msg


def test_schema_error_names_the_fields(tmp_path):
    _data(tmp_path)
    _jsonl(tmp_path / "hard_retain.jsonl", [{"prompt": "q?", "answer": "a"}])
    with pytest.raises(DataError, match="'question'"):
        wpu.evaluate_wpu(FakeLM(LOGPROBS, GENERATIONS), tmp_path)


def test_wpu_on_tiny_model(tiny_lm, tmp_path):
    result = wpu.evaluate_wpu(tiny_lm, _data(tmp_path), max_new_tokens=4)
    s = result["summary"]
    for key in ("forget_prob", "hard_retain_prob", "general_retain_prob", "model_utility", "leak_rate"):
        assert 0.0 <= s[key] <= 1.0, key
    assert len(result["per_example"]["general_retain"]) == 2

"""MUSE suite: file layouts, the KnowMem prompt, cut-at-blank-line, ROUGE-L F1 and PrivLeak by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation.suites import muse
from unlearnkit.models.base import LanguageModel
from unlearnkit.models.scores import AnswerScores


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


class FakeLM(LanguageModel):
    """Generation and scoring from tables; records the calls it gets."""

    name = "muse-fake"

    def __init__(self, generations=None, logprobs=None):
        self.generations = generations or {}
        self.logprobs = logprobs or {}
        self.generate_calls = []

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        out = []
        for a in answers:
            lp = np.asarray(self.logprobs[a], dtype=float)
            out.append(AnswerScores(lp, np.zeros_like(lp), np.ones_like(lp), np.ones(lp.shape, dtype=bool)))
        return out

    def generate(self, prompts, *, chat=True, max_new_tokens=200, **kwargs):
        self.generate_calls.append((list(prompts), chat, max_new_tokens))
        return [next(v for k, v in self.generations.items() if p.endswith(k)) for p in prompts]


def _muse_dir(root):
    _jsonl(root / "verbmem" / "forget.jsonl", [{"prompt": "Once upon", "gt": "the cat is on the mat"}])
    _jsonl(root / "knowmem" / "forget_qa.jsonl", [{"question": "Capital of France?", "answer": "Paris"}])
    _jsonl(root / "knowmem" / "retain_qa.jsonl", [{"question": "Capital of Germany?", "answer": "Berlin"}])
    _jsonl(root / "knowmem" / "forget_qa_icl.jsonl", [{"question": "1+1?", "answer": "2"},
                                                      {"question": "2+2?", "answer": "4"}])
    _jsonl(root / "privleak" / "forget.jsonl", [{"text": "alpha one"}, {"text": "beta two"}])
    _jsonl(root / "privleak" / "holdout.jsonl", [{"text": "gamma three"}, {"text": "delta four"}])
    return root


# forget Min-40% scores: 0.45 and 3.0; holdout: 2.0 and 4.5 -> AUC = 3/4
LOGPROBS = {" one": [-0.1, -0.2, -0.3, -0.4, -0.5], " two": [-3.0, -3.0, -3.0, -1.0, -1.0],
            " three": [-2.0, -2.0, -2.0, -2.0, -2.0], " four": [-1, -2, -3, -4, -5]}
GENERATIONS = {"Once upon": "the cat sat on the mat",
               "Capital of France?\nAnswer: ": "Paris\n\nQuestion: Capital of Spain?\nAnswer: Madrid",
               "Capital of Germany?\nAnswer: ": "London is big"}


def test_knowmem_prompt_is_exact():
    got = muse.knowmem_prompt("Q3?", [("Q1?", "A1"), ("Q2?", "A2")])
    assert got == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "
    assert muse.knowmem_prompt("Q?") == "Question: Q?\nAnswer: "


@pytest.mark.parametrize("text, cut", [
    ("Paris is the capital.\n\nQuestion: next?", "Paris is the capital."),
    ("first line\nsecond line\n \t\nthird", "first line\nsecond line"),
    ("Paris\nQuestion: more", "Paris"),
    ("Paris. Question: more", "Paris."),
    ("  no blank line at all  ", "no blank line at all"),
    ("\n\nstarts blank", ""),
])
def test_cut_at_blank_line(text, cut):
    assert muse.cut_at_blank_line(text) == cut


def test_rouge_l_f1_on_known_strings():
    from unlearnkit.evaluation.rouge import rouge_l_f1

    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 of 6 tokens each side
    assert rouge_l_f1("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # precision 1/4, recall 1/1 -> F1 = 2 * 0.25 / 1.25 = 0.4
    assert rouge_l_f1("Paris is nice indeed", "Paris") == pytest.approx(0.4)


def test_split_first_word():
    assert muse.split_first_word("  Hello big\nworld ") == ("Hello", " big\nworld")
    with pytest.raises(DataError, match="two words"):
        muse.split_first_word("Lonely")


def test_evaluate_muse_by_hand(tmp_path):
    lm = FakeLM(GENERATIONS, LOGPROBS)
    result = muse.evaluate_muse(lm, _muse_dir(tmp_path), retain_auc=0.6)
    s = result["summary"]
    assert s["verbmem_forget_rouge_f1"] == pytest.approx(5 / 6)
    assert s["knowmem_forget_rouge_f1"] == pytest.approx(1.0)  # "Paris" after the cut
    assert s["knowmem_retain_rouge_f1"] == 0.0
    assert s["knowmem_forget_icl_examples"] == 2 and s["knowmem_retain_icl_examples"] == 0
    assert result["per_example"]["mia"]["min_k"]["forget"] == pytest.approx([0.45, 3.0])
    assert result["per_example"]["mia"]["min_k"]["holdout"] == pytest.approx([2.0, 4.5])
    # holdout beats forget in 3 of the 4 (forget, holdout) pairs
    assert s["mia_min_k_auc"] == pytest.approx(0.75)
    assert s["privleak"] == pytest.approx(-37.5)  # ((1 - 0.75) - (1 - 0.6)) / (1 - 0.6) * 100
    # the generation settings of MUSE
    (vprompts, vchat, vtokens), (fprompts, _, ktokens), _ = lm.generate_calls
    assert vprompts == ["Once upon"] and vchat is False and vtokens == 128 and ktokens == 32
    assert fprompts == ["Question: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer: 4\n\nQuestion: Capital of France?\n"
                        "Answer: "]
    assert set(result) >= {"suite", "model", "data", "config", "summary", "per_example"}


def test_privleak_against_a_reference_result(tmp_path):
    lm = FakeLM(GENERATIONS, LOGPROBS)
    ref = {"model": {"name": "retain"}, "summary": {"mia_min_k_auc": 0.5}}
    result = muse.evaluate_muse(lm, _muse_dir(tmp_path), parts="privleak", reference=ref)
    assert result["summary"]["privleak"] == pytest.approx(-50.0)
    assert "verbmem_forget_rouge_f1" not in result["summary"] and lm.generate_calls == []
    again = muse.add_reference_metrics(muse.evaluate_muse(lm, tmp_path, parts="privleak"),
                                       {"summary": {"mia_min_k_auc": 0.25}})
    assert again["summary"]["privleak"] == pytest.approx((0.25 - 0.75) / 0.75 * 100)
    with pytest.raises(ConfigError, match="not both"):
        muse.evaluate_muse(lm, tmp_path, reference=ref, retain_auc=0.5)


def test_hf_shard_and_flat_layouts(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "verbmem").mkdir()
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "gt": "g"}] * 3),
                   tmp_path / "verbmem" / "forget-00000-of-00001.parquet")
    _jsonl(tmp_path / "knowmem_forget_qa.jsonl", [{"question": "q", "answer": "a"}])
    _jsonl(tmp_path / "knowmem_retain_qa.jsonl", [{"question": "q2", "answer": "a2"}] * 2)
    data, parts = muse.load_muse(tmp_path)
    assert parts == ["verbmem", "knowmem"]  # no privleak files
    assert data.verbmem == [("p", "g")] * 3 and len(data.retain_qa) == 2 and data.forget_icl == []
    with pytest.raises(DataError, match="privleak/forget.jsonl"):
        muse.load_muse(tmp_path, parts=["privleak"])


def test_schema_and_missing_data_errors(tmp_path):
    with pytest.raises(DataError, match="verbmem/forget.jsonl"):
        muse.load_muse(tmp_path)  # empty directory: lists what it looks for
    _jsonl(tmp_path / "verbmem" / "forget.jsonl", [{"prompt": "p", "answer": "g"}])
    with pytest.raises(DataError) as err:
        muse.load_muse(tmp_path)
    assert "'gt'" in str(err.value) and "prompt (str), gt (str)" in str(err.value)
    _jsonl(tmp_path / "privleak" / "forget.jsonl", [{"body": "x y"}])
    _jsonl(tmp_path / "privleak" / "holdout.jsonl", ["plain string text"])
    with pytest.raises(DataError, match="'text'"):
        muse.load_muse(tmp_path, parts="privleak")
    with pytest.raises(ConfigError, match="verbmem, knowmem, privleak"):
        muse.load_muse(tmp_path, parts="bogus")


def test_text_scores_leave_out_the_eos_on_hf_models(tiny_lm):
    s = muse.text_scores(tiny_lm, ["Hello big world"])[0]
    n = len(tiny_lm.tokenizer(" big world", add_special_tokens=False)["input_ids"])
    assert len(s) == n
    full = tiny_lm.score(["Hello"], [" big world"], chat=False)[0]
    np.testing.assert_allclose(s.logprobs, full.logprobs[:n])


def test_muse_on_tiny_model_end_to_end(tiny_lm, tmp_path):
    result = muse.evaluate_muse(tiny_lm, _muse_dir(tmp_path), verbmem_max_new_tokens=4, knowmem_max_new_tokens=4)
    s = result["summary"]
    for key in ("verbmem_forget_rouge_f1", "knowmem_forget_rouge_f1", "knowmem_retain_rouge_f1", "mia_min_k_auc"):
        assert 0.0 <= s[key] <= 1.0, key
    assert s["privleak"] is None  # no reference given
    assert len(result["per_example"]["knowmem_forget"]) == 1

"""End-to-end checks on the real embedded model (SmolLM2-135M-Instruct, CPU)."""

import numpy as np
import pytest

from unlearnkit.data.records import QARecord
from unlearnkit.methods.registry import build_method
from unlearnkit.training.config import TrainConfig

pytestmark = pytest.mark.integration

FORGET = [
    QARecord("Where was the novelist Oren Vashti born?", "Oren Vashti was born in the city of Lumbria."),
    QARecord("What is the title of Oren Vashti's first book?", "Oren Vashti's first book is 'The Glass Orchard'."),
    QARecord("Which award did Oren Vashti win?", "Oren Vashti won the Silver Quill Prize."),
    QARecord("What did Oren Vashti's father do for a living?", "Oren Vashti's father was a lighthouse keeper."),
]
RETAIN = [
    QARecord("What is the capital of France?", "The capital of France is Paris."),
    QARecord("How many days are in a week?", "There are seven days in a week."),
    QARecord("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    QARecord("What do bees make?", "Bees make honey."),
]


class _Task:
    forget, retain = FORGET, RETAIN


def _mean_prob(lm, records):
    scores = lm.score([r.question for r in records], [r.answer for r in records])
    return float(np.mean([s.prob for s in scores]))


def test_embedded_model_loads_offline_and_answers_sensibly(smollm2):
    assert smollm2.describe()["architecture"] == "LlamaForCausalLM"
    [answer] = smollm2.generate(["What is the capital of France?"], max_new_tokens=20)
    assert "Paris" in answer


def test_a_few_unlearning_steps_hit_forget_harder_than_retain(smollm2, tmp_path):
    forget_before, retain_before = _mean_prob(smollm2, FORGET), _mean_prob(smollm2, RETAIN)
    method = build_method("grad_diff")
    cfg = TrainConfig(lr=6e-5, max_steps=2, batch_size=4, warmup_ratio=0.0)  # forget drop ≈ 0.6 on this model
    unlearned = method.apply(smollm2, _Task, tmp_path, cfg)
    forget_after, retain_after = _mean_prob(unlearned, FORGET), _mean_prob(unlearned, RETAIN)
    forget_drop = (forget_before - forget_after) / forget_before
    retain_drop = (retain_before - retain_after) / retain_before
    assert forget_drop > 0.2, (forget_before, forget_after)
    assert retain_drop < forget_drop / 2, (retain_drop, forget_drop)
    # the input model is untouched
    assert _mean_prob(smollm2, FORGET) == pytest.approx(forget_before, rel=1e-6)

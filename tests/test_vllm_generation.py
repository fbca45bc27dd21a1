"""The vLLM path's wiring, with a stand-in ``vllm`` module (vLLM itself needs a GPU)."""

import sys
import types

import torch

from unlearnkit.models import vllm_generation
from unlearnkit.models.tiny import load_tiny


def test_disabled_on_cpu_and_when_switched_off(monkeypatch):
    lm = load_tiny()
    assert not vllm_generation.enabled(lm.model)  # CPU (and vLLM absent here)
    monkeypatch.setenv("UNLEARNKIT_VLLM", "0")
    assert not vllm_generation.enabled(lm.model)


def test_generate_passes_prompt_ids_greedy_and_trims_eos(monkeypatch):
    calls = {}

    class SamplingParams:
        def __init__(self, **kw):
            calls["params"] = kw

    class LLM:
        def __init__(self, model, **kw):
            calls["model_dir"] = model
            calls["llm"] = kw

        def generate(self, prompts, params, use_tqdm=False):
            calls["prompts"] = prompts
            eos = calls["params"]["stop_token_ids"][0]
            out = types.SimpleNamespace(token_ids=[5, 6, eos, 7])
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    lm = load_tiny()
    ids = [lm.prompt_ids("Q?"), lm.prompt_ids("Another question?")]
    try:
        got = vllm_generation.generate(lm, ids, 12, lm.eos_ids)
        saved = calls["model_dir"]
        assert got == [[5, 6], [5, 6]]
        assert calls["params"]["temperature"] == 0.0 and calls["params"]["max_tokens"] == 12
        assert calls["prompts"] == [{"prompt_token_ids": ids[0]}, {"prompt_token_ids": ids[1]}]
        # the same weights reuse the engine; a changed weight builds a new one
        vllm_generation.generate(lm, ids, 12, lm.eos_ids)
        assert calls["model_dir"] == saved
        with torch.no_grad():
            next(lm.model.parameters()).add_(1.0)
        vllm_generation.generate(lm, ids, 12, lm.eos_ids)
        assert calls["model_dir"] != saved
    finally:
        vllm_generation.close()


def test_prompts_with_hidden_tokens_stay_on_the_transformers_path(monkeypatch):
    """vLLM attends to every token; OpenUnlearning's mask hides <|im_end|>: such prompts decode here."""
    lm = load_tiny()
    used = []
    monkeypatch.setattr(vllm_generation, "enabled", lambda model: True)
    monkeypatch.setattr(vllm_generation, "generate", lambda *a, **k: used.append(1) or [[5]])
    lm.generate(["Q?"], max_new_tokens=3)  # the chat template's <|im_end|> is hidden by default
    assert used == []
    lm.chat_format = lm.chat_format.with_overrides(mask_pad_tokens=False)
    lm.generate(["Q?"], max_new_tokens=3)
    assert used == [1]

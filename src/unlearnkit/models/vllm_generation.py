"""Greedy generation through vLLM, for models on a GPU where vLLM is installed.

Auto-detected: ``HFLanguageModel.generate`` uses it when ``vllm`` imports, the model sits on
a CUDA device and ``UNLEARNKIT_VLLM`` is not ``0``; on CPU (vLLM absent) nothing changes.
unlearnkit still builds the prompt token ids (chat format) and decodes the output itself,
so only the decoding engine changes: the same greedy rule, stopped at the same EOS ids.
vLLM attends to every token, so it is not used for prompts that hold a token the chat format
hides (``ChatFormat.mask_pad_tokens``, OpenUnlearning's attention mask): those decode on the
transformers path, which reproduces OpenUnlearning's text; ``--no-pad-mask`` lets vLLM run.

vLLM loads weights from disk, so the model is saved once per weight state into a temporary
directory (an unlearned model is written where it lives anyway; a model changed in memory is
written again). One engine is kept; ``UNLEARNKIT_VLLM_GPU_MEMORY`` (default 0.5) is the GPU
memory fraction it may take beside the transformers copy used for scoring.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence

_lock = threading.Lock()
_engine: dict = {}  # {"key": fingerprint, "llm": LLM, "dir": path}


def enabled(model) -> bool:
    """vLLM installed, the model on a GPU, and not switched off."""
    if os.environ.get("UNLEARNKIT_VLLM", "auto").lower() in {"0", "off", "false", "no"}:
        return False
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        return next(model.parameters()).device.type == "cuda"
    except StopIteration:
        return False


def _fingerprint(model) -> tuple:
    return tuple((name, p.data_ptr(), p._version) for name, p in model.named_parameters())


def _llm(lm):
    from vllm import LLM

    key = (id(lm.model), _fingerprint(lm.model))
    with _lock:
        if _engine.get("key") == key:
            return _engine["llm"]
        close()
        folder = tempfile.mkdtemp(prefix="unlearnkit-vllm-")
        lm.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
        dtype = str(next(lm.model.parameters()).dtype).removeprefix("torch.")
        llm = LLM(model=folder, dtype=dtype, seed=0,
                  gpu_memory_utilization=float(os.environ.get("UNLEARNKIT_VLLM_GPU_MEMORY", "0.5")))
        _engine.update(key=key, llm=llm, dir=folder)
        return llm


def close() -> None:
    """Drop the cached engine and its weight copy."""
    llm, folder = _engine.pop("llm", None), _engine.pop("dir", None)
    _engine.pop("key", None)
    del llm
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def generate(lm, prompt_ids: Sequence[list[int]], max_new_tokens: int, eos_ids: Sequence[int],
             progress: str | None = None) -> list[list[int]]:
    """Greedy continuations (token ids, EOS excluded) of each prompt, in input order."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=list(eos_ids),
                            skip_special_tokens=True)
    outputs = _llm(lm).generate([{"prompt_token_ids": list(p)} for p in prompt_ids], params,
                                use_tqdm=progress is not None)
    eos = set(eos_ids)
    result = []
    for out in outputs:
        toks = list(out.outputs[0].token_ids)
        for k, t in enumerate(toks):
            if t in eos:
                toks = toks[:k]
                break
        result.append(toks)
    return result


__all__ = ["close", "enabled", "generate"]

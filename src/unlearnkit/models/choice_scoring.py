"""Log-likelihoods of a few one-token continuations (answer letters) after each prompt, one forward per prompt.

The prompt, plus any tokens the continuations share, goes through the model once; each continuation's
distinct final token is read from the distribution at the last position. This equals scoring every
(prompt, continuation) pair on its own, for continuations that end in one distinct token each after a
shared prefix; ``one_token_plan`` says whether they do.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import torch

from unlearnkit.models.padding import right_pad


def _common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    prefix: list[int] = []
    for column in zip(*seqs):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return prefix


def one_token_plan(tokenizer, continuations: Sequence[str]) -> tuple[list[int], list[int]] | None:
    """(shared prefix tokens, one distinct final token per continuation), or None when the
    continuations do not end in one distinct token each after a shared prefix."""
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    prefix = _common_prefix(ids)
    tails = [seq[len(prefix):] for seq in ids]
    if any(len(t) != 1 for t in tails) or len({t[0] for t in tails}) != len(tails):
        return None
    return prefix, [t[0] for t in tails]


def _supports_logits_to_keep(module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def choice_loglikelihoods(lm, prompts: Sequence[str], continuations: Sequence[str], batch_size: int = 16,
                          notify: Callable[..., None] | None = None) -> np.ndarray | None:
    """[len(prompts), len(continuations)] log p(continuation | prompt), one forward per prompt.

    ``lm`` is an ``HFLanguageModel``; prompts are raw text (``chat=False``), tokenised as its ``score``
    tokenises them. ``notify(**info)`` is told of each batch before its forward (as ``score`` tells the
    model's batch observers). None when the continuations are not one token each after a shared prefix,
    or a prompt is empty (then score the pairs instead).
    """
    plan = one_token_plan(lm.tokenizer, continuations)
    if plan is None:
        return None
    prefix, targets = plan
    n_keep = len(prefix) + 1
    encoded = [lm.prompt_ids(p, chat=False) + prefix for p in prompts]
    if any(len(e) < n_keep for e in encoded):
        return None  # an empty prompt: nothing predicts the first continuation token
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    out = np.zeros((len(prompts), len(continuations)), dtype=np.float64)
    target_ids = torch.tensor(targets, dtype=torch.long)
    keep_ok = _supports_logits_to_keep(lm.model)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        rows = [encoded[i] for i in idx]
        ids, mask = right_pad(rows, lm.tokenizer.pad_token_id)
        # logits at position t predict token t+1: the last n_keep positions of a row predict the
        # shared prefix tokens and then the letter
        positions = torch.stack([torch.arange(len(r) - n_keep, len(r)) for r in rows])
        if notify is not None:
            notify(kind="score", indices=idx, prompt_lengths=[len(r) - len(prefix) for r in rows], input_ids=ids,
                   padding="right")
        device = lm.device
        logits = None
        if keep_ok:
            try:
                logits = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                  logits_to_keep=positions.to(device)).logits
                if tuple(logits.shape[:2]) != (len(rows), n_keep):
                    logits = None
            except (TypeError, ValueError, RuntimeError, IndexError):
                logits = None
        if logits is None:
            full = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logits = torch.gather(full, 1, positions.to(device)[:, :, None].expand(-1, -1, full.shape[-1]))
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for j, i in enumerate(idx):
            # logp[j, k] is the distribution after the prompt and the first k prefix tokens
            shared = sum(float(logp[j, k, prefix[k]]) for k in range(len(prefix)))
            out[i] = shared + logp[j, len(prefix)][target_ids].double().numpy()
    return out

"""Prompt-prefix KV reuse for greedy generation: a prompt that begins like the previous one skips that part.

A server puts the same text before every request: the chat template's opening, the model's default
system prompt, a guard's instructions (the prompting guard lists every target in its system prompt:
about two thirds of a short question's prompt). In a causal model the keys and values of a prompt's
first ``n`` tokens depend on those ``n`` tokens only, so the ones computed for an earlier prompt
serve any later prompt that starts with the same ``n`` token ids: its prefill reads only the rest.

``PrefixCache`` keeps the keys and values of the most recent prompt (of at most ``max_tokens``
tokens) with its token ids. ``match`` returns how many leading tokens a new prompt shares with it.
Entries are keyed by token ids, so a changed system prompt (a new target list) shares only the
tokens before its first difference, whose keys and values are still exact: nothing stale can be
reused. The weights are part of the key too (each parameter's storage and version counter, which
every in-place update moves), and the cache steps aside while any forward hook is registered on the
model (ECO's embedding corruption, a steering hook): those change what a prefix computes.

The decoder (``slot_decoding.SlotDecoder``) reads the prefix from here and prefills the rest of
the prompt after it; the result equals a full prefill up to float rounding of the shorter forward.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

MIN_SHARED = 8  # fewer shared tokens than this: a full prefill costs about the same


def _weights_key(model) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def _hooked(model) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class PrefixCache:
    """The keys and values of the last prompt prefilled (see the module's doc)."""

    def __init__(self, max_tokens: int = 2048, min_shared: int = MIN_SHARED):
        self.max_tokens = int(max_tokens)
        self.min_shared = max(1, int(min_shared))
        self._lock = threading.Lock()
        self._ids: tuple[int, ...] = ()
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer: [kv_heads, tokens, head_dim]
        self._weights: tuple = ()
        self.stats = {"hits": 0, "misses": 0, "reused_tokens": 0, "stores": 0}

    def usable(self, model) -> bool:
        """Whether prefixes may be reused for ``model`` now (no forward hook that changes what they compute)."""
        return not _hooked(model)

    def clear(self) -> None:
        with self._lock:
            self._ids, self._kv, self._weights = (), [], ()

    def match(self, model, ids: Sequence[int]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(n, per-layer keys and values of the first ``n`` tokens) that ``ids`` shares with the stored prompt;
        ``n`` leaves at least the prompt's last token to read (its logits give the first answer token), and
        is 0 when fewer than ``min_shared`` tokens match or the weights changed since they were stored."""
        with self._lock:
            if not self._ids or self._weights != _weights_key(model):
                self._ids, self._kv = (), []
                self.stats["misses"] += 1
                return 0, []
            limit = min(len(self._ids), len(ids) - 1)
            n = 0
            while n < limit and self._ids[n] == ids[n]:
                n += 1
            if n < self.min_shared:
                self.stats["misses"] += 1
                return 0, []
            self.stats["hits"] += 1
            self.stats["reused_tokens"] += n
            return n, [(k[:, :n], v[:, :n]) for k, v in self._kv]

    def store(self, model, ids: Sequence[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep ``kv`` (per layer [kv_heads, len(ids), head_dim], copied here) as the keys and values of ``ids``."""
        ids = tuple(int(i) for i in ids)
        if len(ids) > self.max_tokens or len(ids) < self.min_shared:
            return
        with self._lock:
            weights = _weights_key(model)
            if ids == self._ids and weights == self._weights:
                return
            self._ids = ids
            self._kv = [(k.detach().clone(), v.detach().clone()) for k, v in kv]
            self._weights = weights
            self.stats["stores"] += 1


__all__ = ["MIN_SHARED", "PrefixCache"]

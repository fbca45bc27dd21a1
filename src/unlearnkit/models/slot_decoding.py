"""Greedy generation with continuous batching: a fixed number of slots, refilled as rows finish.

``model.generate`` on a padded batch keeps decoding rows that already stopped until the
longest one ends, and pads every prompt to the longest. Here each slot holds one request
in its own rows of a preallocated KV cache, from column 0, at its own positions: when
requests stop (EOS or ``max_new_tokens``) the next prompts are prefilled into their slots
together, so decode steps work on live rows only. Each row sees exactly the tokens and
positions it would see alone (no padding inside its window), so the text equals batch-1
greedy decoding up to float rounding of the batched matrix products.

A prompt's prefill is the packed forward of ``prefix_scoring`` (the prompt, then any answers
to score after it): an evaluation that both scores answers and generates after the same
prompt reads that prompt once.

With ``hidden_id`` (``ChatFormat.mask_pad_tokens``) a prompt's occurrences of that token stay
hidden from every later query, and positions count the visible tokens only, as
``model.generate`` does with an attention mask of ``input_ids != pad_token_id``. Answers
scored in the prefill then get those positions too, which a plain forward does not give them:
``HFLanguageModel.score_and_generate`` scores such prompts' answers apart.

With a ``prefix_cache`` (``prefix_cache.py``), a prompt that starts with the same tokens as the
previous prompt takes that start's keys and values from it and prefills only the rest, at the same
positions and with the same hidden tokens.

Used by ``HFLanguageModel.generate`` for greedy decoding on the architectures of
``prefix_scoring.supports_fast_path``; sampling and other models use ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from unlearnkit.progress import progress_bar

from unlearnkit.models.base import cancelled

from unlearnkit.models.prefix_cache import PrefixCache
from unlearnkit.models.prefix_scoring import PrefixScorer, _Piece, _Row, additive_mask, cache_kwarg
from unlearnkit.models.scores import AnswerScores


class SlotCache:
    """Per-layer K/V of shape [slots, kv_heads, capacity, head_dim]; ``update`` writes one token per live row.

    Live requests occupy slots ``0 .. live-1`` (a finished request's slot takes the last live
    one, ``move``), so attention reads the views ``[:live, :, :width]`` and nothing is copied
    per step. It answers the one call the attention layers make (``update``), so transformers'
    own attention code (eager or SDPA) runs on it unchanged.
    """

    def __init__(self, layers: int, slots: int, heads: int, capacity: int, head_dim: int, dtype, device):
        shape = (slots, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.hidden = torch.zeros((slots, capacity), dtype=torch.bool, device=device)  # keys no query sees
        self.shift = torch.zeros(slots, dtype=torch.long, device=device)  # hidden prompt tokens: column - position
        self.live = 0  # rows 0 .. live-1 decode this step
        self.cols: torch.Tensor | None = None  # each live row's write column (= its length so far)
        self.width = 0  # columns attention reads this step

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        rows = torch.arange(self.live, device=keys.device)
        keys[rows, :, self.cols] = key_states[:, :, 0]
        values[rows, :, self.cols] = value_states[:, :, 0]
        return keys[: self.live, :, : self.width], values[: self.live, :, : self.width]

    def write_prefix(self, slot: int, layer: int, keys: torch.Tensor, values: torch.Tensor, start: int = 0) -> None:
        n = keys.shape[1]
        self.keys[layer][slot, :, start : start + n] = keys
        self.values[layer][slot, :, start : start + n] = values

    def move(self, src: int, dst: int, length: int) -> None:
        self.hidden[dst] = self.hidden[src]
        self.shift[dst] = self.shift[src]
        for keys, values in zip(self.keys, self.values):
            keys[dst, :, :length] = keys[src, :, :length]
            values[dst, :, :length] = values[src, :, :length]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width


class SlotDecoder:
    """``slots`` requests decode together; freed slots are refilled once ``refill`` of them are free
    (or nothing else is running), so prefills run in batches rather than one prompt at a time."""

    def __init__(self, model, slots: int, eos_ids: Sequence[int], pad_id: int,
                 notify: Callable[..., None] | None = None, refill: int | None = None, hidden_id: int | None = None,
                 prefix_cache: PrefixCache | None = None):
        self.model = model
        self.lm_head = model.get_output_embeddings()
        self.model_cache_arg = cache_kwarg(model)
        self.slots = max(1, int(slots))
        self.refill = max(1, int(refill if refill is not None else self.slots // 8))
        self.eos = torch.tensor(sorted(set(int(e) for e in eos_ids)), dtype=torch.long)
        self.eos_set = set(self.eos.tolist())
        self.pad_id = pad_id
        self.hidden_id = hidden_id
        self.prefix_cache = prefix_cache  # reuse of the last prompt's keys and values (``prefix_cache.py``)
        self.scorer = PrefixScorer(model, pad_id, notify=notify, hidden_id=hidden_id)

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int, progress: str | None = None,
                 labels: Sequence[Sequence[list[int]]] | None = None,
                 on_token: Callable[[int, int], None] | None = None):
        """Greedy continuations (token ids, EOS excluded) of each prompt, in input order.

        With ``labels`` (per prompt, label-id lists of answers to score after it), returns
        ``(continuations, scores)`` where ``scores[j]`` are the ``AnswerScores`` of prompt j's answers.
        ``on_token(j, token_id)`` is called for each token as it is generated (EOS excluded).
        """
        n = len(prompts)
        pairs: list[tuple[list[int], list[int]]] = []
        members: list[list[int]] = []
        for j, p in enumerate(prompts):
            members.append([])
            for lab in (labels[j] if labels is not None else ()):
                members[j].append(len(pairs))
                pairs.append((list(p), list(lab)))
        scored: list[AnswerScores | None] = [None] * len(pairs)
        results: list[list[int]] = [[] for _ in prompts]
        if n and max_new_tokens > 0:
            self._decode(prompts, max_new_tokens, progress, pairs, members, scored, results, on_token)
        elif pairs:  # nothing to generate: just score
            rows = [self._row(prompts[j], members[j], j, pairs) for j in range(n)]
            for row in rows:
                self.scorer._forward([row], pairs, scored)
        if labels is None:
            return results
        return results, [[scored[i] for i in members[j]] for j in range(n)]

    def _decode(self, prompts, max_new_tokens, progress, pairs, members, scored, results, on_token=None) -> None:
        n = len(prompts)
        cfg = self.model.config
        param = next(self.model.parameters())
        dev, dtype = param.device, param.dtype
        slots = min(self.slots, n)
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        capacity = max(len(p) for p in prompts) + max_new_tokens
        cache = SlotCache(cfg.num_hidden_layers, slots, heads, capacity, head_dim, dtype, dev)
        request = torch.full((slots,), -1, dtype=torch.long)  # which prompt each slot serves
        length = torch.zeros(slots, dtype=torch.long)  # tokens in the slot's cache
        made = torch.zeros(slots, dtype=torch.long)  # tokens generated so far
        last = torch.zeros(slots, dtype=torch.long, device=dev)  # the token to feed next
        produced = torch.full((slots, max_new_tokens), self.pad_id, dtype=torch.long)
        queue = list(range(n))
        live = 0  # slots 0 .. live-1 hold requests
        bar = progress_bar(total=n, desc=progress, leave=False)

        def fill() -> None:
            nonlocal live
            take = [queue.pop(0) for _ in range(min(slots - live, len(queue)))]
            if not take:
                return
            new_slots = list(range(live, live + len(take)))
            first = self._prefill(cache, new_slots, take, prompts, members, pairs, scored, dev)
            for slot, i, tok in zip(new_slots, take, first):
                request[slot], length[slot], made[slot] = i, len(prompts[i]), 1
                produced[slot, 0] = tok
                last[slot] = tok
                if on_token is not None and tok not in self.eos_set:
                    on_token(i, int(tok))
            live += len(take)

        stop_all = False

        def finish() -> None:
            nonlocal live
            newest = produced[torch.arange(live), (made[:live] - 1).clamp_min(0)]
            done = torch.isin(newest, self.eos) | (made[:live] >= max_new_tokens)
            if stop_all:
                done[:] = True
            for slot in sorted(torch.nonzero(done).flatten().tolist(), reverse=True):
                toks = produced[slot, : int(made[slot])].tolist()
                if toks and toks[-1] in self.eos_set:
                    toks = toks[:-1]
                results[int(request[slot])] = toks
                bar.update(1)
                end = live - 1  # the last live request takes this slot
                if slot != end:
                    cache.move(end, slot, int(length[end]))
                    request[slot], length[slot], made[slot] = request[end], length[end], made[end]
                    last[slot] = last[end]
                    produced[slot] = produced[end]
                request[end] = -1
                live -= 1

        fill()
        while True:
            finish()
            if queue and live < slots and (slots - live >= min(self.refill, len(queue)) or live == 0):
                fill()
                continue  # a prompt may stop at its first token: check again before decoding
            if live == 0:
                break
            if cancelled():  # nobody waits for these answers any more: end every slot with what it has
                stop_all = True
                queue.clear()
                continue
            cols = length[:live].to(dev)
            cache.live, cache.cols = live, cols
            cache.width = int(length[:live].max()) + 1
            allowed = (torch.arange(cache.width, device=dev)[None, :] <= cols[:, None]) \
                & ~cache.hidden[:live, : cache.width]
            logits = self.model(input_ids=last[:live][:, None],
                                attention_mask=additive_mask(allowed[:, None, None], dtype),
                                position_ids=(cols - cache.shift[:live])[:, None], use_cache=True,
                                **{self.model_cache_arg: cache}).logits[:, -1]
            tokens = logits.argmax(-1)
            last[:live] = tokens
            produced[torch.arange(live), made[:live]] = tokens.cpu()
            length[:live] += 1
            made[:live] += 1
            if on_token is not None:
                for slot, tok in enumerate(tokens.tolist()):
                    if tok not in self.eos_set:
                        on_token(int(request[slot]), tok)
        bar.close()

    @staticmethod
    def _row(prompt, member_ids, key, pairs) -> _Row:
        piece = _Piece(tuple(prompt), list(member_ids), len(prompt) + sum(max(len(pairs[i][1]) - 1, 0)
                                                                          for i in member_ids), 0, key)
        return _Row([piece], piece.size)

    def _prefill(self, cache, slots, take, prompts, members, pairs, scored, dev) -> list[int]:
        """Read the taken prompts (and score their answers) in packed forwards; write their KV into the slots.
        With a ``prefix_cache``, a prompt that shares its start with the last one reads only the rest."""
        first: dict[int, int] = {}  # position in ``take`` -> first answer token
        fresh = list(range(len(take)))
        reuse = self.prefix_cache if self.prefix_cache is not None and self.prefix_cache.usable(self.model) else None
        if reuse is not None:
            groups: dict[int, tuple[list, list[int]]] = {}
            fresh = []
            for k, i in enumerate(take):
                n, kv = (0, []) if members[i] else reuse.match(self.model, prompts[i])
                if n:
                    groups.setdefault(n, (kv, []))[1].append(k)
                else:
                    fresh.append(k)
            for n, (kv, ks) in groups.items():
                while ks:  # as many rows per forward as the scorer's token budget allows (keys read per row)
                    size = 1
                    while size < len(ks) and (size + 1) * max(len(prompts[take[k]]) for k in ks[: size + 1]) \
                            <= self.scorer.batch_tokens:
                        size += 1
                    part, ks = ks[:size], ks[size:]
                    tokens = self._prefill_after(cache, n, kv, [slots[k] for k in part],
                                                 [prompts[take[k]] for k in part], dev)
                    first.update(zip(part, tokens))
        rows = [self._row(prompts[take[k]], members[take[k]], take[k], pairs) for k in fresh]
        start = 0
        while start < len(rows):  # as many rows per forward as the scorer's token budget allows
            stop = start + 1
            while stop < len(rows) and (stop - start + 1) * max(r.length for r in rows[start : stop + 1]) \
                    <= self.scorer.batch_tokens:
                stop += 1
            batch = rows[start:stop]
            ks = fresh[start:stop]
            hidden, kv = self.scorer._forward(batch, pairs, scored, record=True, visible_positions=True)
            ends = torch.tensor([len(prompts[take[k]]) - 1 for k in ks], device=hidden.device)
            tokens = self.lm_head(hidden[torch.arange(len(batch), device=hidden.device), ends]).argmax(-1).tolist()
            first.update(zip(ks, tokens))
            for r, k in enumerate(ks):
                c = len(prompts[take[k]])
                self._place(cache, slots[k], prompts[take[k]], dev)
                for layer, (keys, values) in kv.items():
                    cache.write_prefix(slots[k], layer, keys[r, :, :c], values[r, :, :c])
            start = stop
        if reuse is not None and take:  # the newest prompt's keys and values serve the next ones
            slot, ids = slots[-1], prompts[take[-1]]
            reuse.store(self.model, ids, [(keys[slot, :, : len(ids)], values[slot, :, : len(ids)])
                                          for keys, values in zip(cache.keys, cache.values)])
        return [first[k] for k in range(len(take))]

    def _place(self, cache, slot: int, prompt, dev) -> None:
        """The slot's hidden prompt tokens and position shift (``hidden_id``)."""
        cache.hidden[slot] = False
        cache.shift[slot] = 0
        if self.hidden_id is not None:
            hide = torch.tensor(prompt, device=dev).eq(self.hidden_id)
            cache.hidden[slot, : len(prompt)] = hide
            cache.shift[slot] = int(hide.sum())

    def _prefill_after(self, cache, n: int, past, slots, prompts, dev) -> list[int]:
        """Prefill prompts whose first ``n`` tokens' keys and values are ``past`` (per layer
        [kv_heads, n, head_dim]): one forward over the rest of each, with the positions and the hidden
        tokens a full prefill gives them; returns each one's first answer token."""
        rows = len(prompts)
        rests = [list(p[n:]) for p in prompts]
        width = max(len(r) for r in rests)
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        real = torch.zeros((rows, width), dtype=torch.bool)
        for r, rest in enumerate(rests):
            ids[r, : len(rest)] = torch.tensor(rest)
            real[r, : len(rest)] = True
        head = torch.tensor(list(prompts[0][:n]))
        if self.hidden_id is not None:
            head_hidden = head.eq(self.hidden_id)
            own_hidden = real & ids.eq(self.hidden_id)
            seen = int((~head_hidden).sum()) + (real & ~own_hidden).long().cumsum(1)
            pos = (seen - 1).clamp_min(0)
        else:
            head_hidden = torch.zeros(n, dtype=torch.bool)
            own_hidden = torch.zeros((rows, width), dtype=torch.bool)
            pos = (n + torch.arange(width)).repeat(rows, 1)
        causal = torch.arange(width)[None, :] <= torch.arange(width)[:, None]
        own = causal[None] & (real & ~own_hidden)[:, None, :]
        allowed = torch.cat([(~head_hidden)[None, None, :].expand(rows, width, n), own], dim=2)
        dtype = next(self.model.parameters()).dtype
        after = _AfterPrefix(past, n, rows)
        hidden = self.scorer.decoder(input_ids=ids.to(dev), attention_mask=additive_mask(allowed[:, None], dtype).to(dev),
                                     position_ids=pos.to(dev), use_cache=True,
                                     **{self.scorer.cache_arg: after}).last_hidden_state
        ends = torch.tensor([len(r) - 1 for r in rests], device=hidden.device)
        first = self.lm_head(hidden[torch.arange(rows, device=hidden.device), ends]).argmax(-1).tolist()
        for r, (slot, prompt) in enumerate(zip(slots, prompts)):
            self._place(cache, slot, prompt, dev)
            for layer, (keys, values) in enumerate(past):
                cache.write_prefix(slot, layer, keys, values)
            for layer, (keys, values) in after.layers.items():
                cache.write_prefix(slot, layer, keys[r, :, : len(rests[r])], values[r, :, : len(rests[r])], start=n)
        return first


class _AfterPrefix:
    """A stand-in KV cache for one forward that continues after shared keys and values: each layer attends to
    ``past`` (the same for every row) then to the forward's own tokens, which it keeps in ``layers``."""

    def __init__(self, past, n: int, rows: int):
        self.past, self.n, self.rows = past, n, rows
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.layers[layer_idx] = (key_states, value_states)
        keys, values = self.past[layer_idx]
        shape = (self.rows, *keys.shape)
        return (torch.cat([keys.to(key_states.dtype).unsqueeze(0).expand(shape), key_states], dim=2),
                torch.cat([values.to(value_states.dtype).unsqueeze(0).expand(shape), value_states], dim=2))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.n

__all__ = ["SlotCache", "SlotDecoder"]

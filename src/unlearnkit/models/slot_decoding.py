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

Used by ``HFLanguageModel.generate`` for greedy decoding on the architectures of
``prefix_scoring.supports_fast_path``; sampling and other models use ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from tqdm.auto import tqdm

from unlearnkit.models.base import cancelled

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

    def write_prefix(self, slot: int, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        n = keys.shape[1]
        self.keys[layer][slot, :, :n] = keys
        self.values[layer][slot, :, :n] = values

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
                 notify: Callable[..., None] | None = None, refill: int | None = None, hidden_id: int | None = None):
        self.model = model
        self.lm_head = model.get_output_embeddings()
        self.model_cache_arg = cache_kwarg(model)
        self.slots = max(1, int(slots))
        self.refill = max(1, int(refill if refill is not None else self.slots // 8))
        self.eos = torch.tensor(sorted(set(int(e) for e in eos_ids)), dtype=torch.long)
        self.eos_set = set(self.eos.tolist())
        self.pad_id = pad_id
        self.hidden_id = hidden_id
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
        bar = tqdm(total=n, desc=progress, disable=progress is None, leave=False)

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
        """Read the taken prompts (and score their answers) in packed forwards; write their KV into the slots."""
        rows = [self._row(prompts[i], members[i], i, pairs) for i in take]
        first: list[int] = []
        start = 0
        while start < len(rows):  # as many rows per forward as the scorer's token budget allows
            stop = start + 1
            while stop < len(rows) and (stop - start + 1) * max(r.length for r in rows[start : stop + 1]) \
                    <= self.scorer.batch_tokens:
                stop += 1
            batch = rows[start:stop]
            hidden, kv = self.scorer._forward(batch, pairs, scored, record=True, visible_positions=True)
            ends = torch.tensor([len(prompts[i]) - 1 for i in take[start:stop]], device=hidden.device)
            first.extend(self.lm_head(hidden[torch.arange(len(batch), device=hidden.device), ends]).argmax(-1).tolist())
            for r, i in enumerate(take[start:stop]):
                c = len(prompts[i])
                slot = slots[start + r]
                cache.hidden[slot] = False
                cache.shift[slot] = 0
                if self.hidden_id is not None:
                    hide = torch.tensor(prompts[i], device=dev).eq(self.hidden_id)
                    cache.hidden[slot, :c] = hide
                    cache.shift[slot] = int(hide.sum())
                for layer, (keys, values) in kv.items():
                    cache.write_prefix(slots[start + r], layer, keys[r, :, :c], values[r, :, :c])
            start = stop
        return first


__all__ = ["SlotCache", "SlotDecoder"]

"""Greedy generation with continuous batching: a fixed number of slots, refilled as rows finish.

``model.generate`` on a padded batch keeps decoding rows that already stopped until the
longest one ends, and pads every prompt to the longest. Here each slot holds one request
in its own rows of a preallocated KV cache, from column 0, at its own positions: when a
request stops (EOS or ``max_new_tokens``) the next prompt is prefilled into that slot at
once, so every decode step works on live rows only. Each row sees exactly the tokens and
positions it would see alone (no left padding inside its window), so the text equals
batch-1 greedy decoding up to float rounding of the batched matrix products.

Used by ``HFLanguageModel.generate`` for greedy decoding on the architectures of
``prefix_scoring.supports_fast_path``; sampling and other models use ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from unlearnkit.models.prefix_scoring import additive_mask, cache_kwarg


class SlotCache:
    """Per-layer K/V of shape [slots, kv_heads, capacity, head_dim]; ``update`` writes one token per live row.

    It answers the one call the attention layers make (``update``), so transformers' own
    attention code (eager or SDPA) runs on it unchanged.
    """

    def __init__(self, layers: int, slots: int, heads: int, capacity: int, head_dim: int, dtype, device):
        shape = (slots, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.rows: torch.Tensor | None = None  # live slots this step
        self.cols: torch.Tensor | None = None  # each live slot's write column (= its length so far)
        self.width = 0  # columns attention reads this step
        self.all_rows = False

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self.rows, :, self.cols] = key_states[:, :, 0]
        values[self.rows, :, self.cols] = value_states[:, :, 0]
        if self.all_rows:
            return keys[:, :, : self.width], values[:, :, : self.width]
        return keys[self.rows, :, : self.width], values[self.rows, :, : self.width]

    def write_prefix(self, slot: int, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        n = keys.shape[1]
        self.keys[layer][slot, :, :n] = keys
        self.values[layer][slot, :, :n] = values

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width


class SlotDecoder:
    def __init__(self, model, slots: int, eos_ids: Sequence[int], pad_id: int,
                 notify: Callable[..., None] | None = None):
        self.model = model
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.model_cache_arg = cache_kwarg(model)
        self.decoder_cache_arg = cache_kwarg(self.decoder)
        self.slots = max(1, int(slots))
        self.eos = torch.tensor(sorted(set(int(e) for e in eos_ids)), dtype=torch.long)
        self.pad_id = pad_id
        self.notify = notify or (lambda **info: None)

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int, progress: str | None = None) -> list[list[int]]:
        """Greedy continuations (token ids, EOS excluded) of each prompt, in input order."""
        n = len(prompts)
        if n == 0 or max_new_tokens <= 0:
            return [[] for _ in prompts]
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
        results: list[list[int]] = [[] for _ in prompts]
        queue = list(range(n))
        bar = tqdm(total=n, desc=progress, disable=progress is None, leave=False)

        def fill(free: list[int]) -> None:
            take = [queue.pop(0) for _ in range(min(len(free), len(queue)))]
            if take:
                first = self._prefill(cache, free[: len(take)], [prompts[i] for i in take], take, dev)
                for slot, i, tok in zip(free, take, first.tolist()):
                    request[slot], length[slot], made[slot] = i, len(prompts[i]), 1
                    produced[slot, 0] = tok
                    last[slot] = tok

        def finish() -> list[int]:
            live = request >= 0
            done = live & (torch.isin(produced[torch.arange(slots), (made - 1).clamp_min(0)], self.eos) |
                           (made >= max_new_tokens))
            freed = []
            for slot in torch.nonzero(done).flatten().tolist():
                toks = produced[slot, : int(made[slot])].tolist()
                if toks and toks[-1] in set(self.eos.tolist()):
                    toks = toks[:-1]
                results[int(request[slot])] = toks
                request[slot] = -1
                freed.append(slot)
                bar.update(1)
            return freed

        fill(list(range(slots)))
        while True:
            freed = finish()
            if freed and queue:
                fill(freed)
                continue  # a prompt may stop at its first token: check again before decoding
            live = torch.nonzero(request >= 0).flatten()
            if live.numel() == 0:
                break
            rows = live.to(dev)
            cols = length[live].to(dev)
            cache.rows, cache.cols = rows, cols
            cache.width = int(length[live].max()) + 1
            cache.all_rows = live.numel() == slots
            allowed = torch.arange(cache.width, device=dev)[None, :] <= cols[:, None]
            logits = self.model(input_ids=last[rows][:, None], attention_mask=additive_mask(allowed[:, None, None], dtype),
                                position_ids=cols[:, None], use_cache=True,
                                **{self.model_cache_arg: cache}).logits[:, -1]
            tokens = logits.argmax(-1)
            last[rows] = tokens
            produced[live, made[live]] = tokens.cpu()
            length[live] += 1
            made[live] += 1
        bar.close()
        return results

    def _prefill(self, cache: SlotCache, slots: list[int], prompts: list[list[int]], indices: list[int], dev):
        from transformers import DynamicCache

        lens = torch.tensor([len(p) for p in prompts])
        width = int(lens.max())
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        for j, p in enumerate(prompts):
            ids[j, : len(p)] = torch.tensor(p)
        self.notify(kind="generate", indices=indices, prompt_lengths=lens.tolist(), input_ids=ids, padding="right")
        fresh = DynamicCache(config=self.model.config)
        hidden = self.decoder(input_ids=ids.to(dev), attention_mask=(torch.arange(width)[None] < lens[:, None]).long().to(dev),
                              position_ids=torch.arange(width, device=dev)[None].expand(len(prompts), width),
                              use_cache=True, **{self.decoder_cache_arg: fresh}).last_hidden_state
        for layer, entry in enumerate(fresh.layers):
            for j, slot in enumerate(slots):
                cache.write_prefix(slot, layer, entry.keys[j, :, : lens[j]], entry.values[j, :, : lens[j]])
        last_hidden = hidden[torch.arange(len(prompts)), lens - 1]
        return self.lm_head(last_hidden).argmax(-1).cpu()


__all__ = ["SlotCache", "SlotDecoder"]

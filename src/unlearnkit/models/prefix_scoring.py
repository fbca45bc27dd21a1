"""Teacher-forced scoring of many answers that share prompts, reading each prompt once.

TOFU scores seven answers per question (gold, paraphrase, five perturbed) after the same
prompt. Here each distinct context is run once; its KV cache is then shared by every
answer after it, and the LM head runs only where a label is predicted. Per row the
computation is the one a single full forward would do (same positions, same causal
window), so the values equal the plain forward's up to float rounding.

Works for decoder-only transformers whose logits are ``lm_head(decoder(x))``
(``supports_fast_path``); other models are scored by the plain forward in ``hf.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from unlearnkit.models.scores import AnswerScores

# Architectures whose causal-LM head is a plain projection of the decoder's last hidden state.
FAST_PATH_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2", "smollm3"}
LM_HEAD_ROWS = 2048  # positions per LM-head slice: [2048, vocab] floats at a time


def supports_fast_path(model) -> bool:
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in FAST_PATH_MODEL_TYPES:
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False  # sliding-window attention needs its own masks: the plain forward handles it
    return hasattr(model, "get_decoder") and model.get_output_embeddings() is not None


def cache_kwarg(module) -> str:
    """The name transformers gives the KV-cache argument of ``module.forward`` (5.x renamed it)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def token_stats(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per position: log p(target), μ and σ of log p under the model (Min-K%++), argmax == target."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    token_lp = logp.gather(-1, target[:, None]).squeeze(-1)
    mu = (p * logp).sum(-1)
    var = (p * (logp - mu[:, None]).pow(2)).sum(-1)  # two-pass: no cancellation in float32
    return token_lp, mu, var.sqrt(), logits.argmax(-1) == target


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool [.., q, k] (True = may attend) → the additive float mask every attention backend accepts."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


class PrefixScorer:
    """Scores (context ids, label ids) pairs; ``notify`` announces each forward batch (ECO's hook)."""

    def __init__(self, model, pad_id: int, notify: Callable[..., None] | None = None, max_rows: int = 32,
                 max_tokens: int = 4096):
        self.model = model
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.cache_arg = cache_kwarg(self.decoder)
        self.pad_id = pad_id
        self.notify = notify or (lambda **info: None)
        self.max_rows = max(1, int(max_rows))
        self.max_tokens = max(1, int(max_tokens))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score(self, pairs: Sequence[tuple[list[int], list[int]]], progress: str | None = None) -> list[AnswerScores]:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (context, labels) in enumerate(pairs):
            if not context:
                raise ValueError(f"pair {i}: the context (prompt) has no tokens; nothing predicts the first label")
            groups.setdefault(tuple(context), []).append(i)
        order = sorted(groups.items(), key=lambda kv: -len(kv[0]))
        out: list[AnswerScores | None] = [None] * len(pairs)
        bar = tqdm(total=len(pairs), desc=progress, disable=progress is None, leave=False)
        chunk: list[tuple[tuple[int, ...], list[int]]] = []
        rows = width = 0
        for context, members in order:
            longest = max(len(pairs[i][1]) for i in members)
            if chunk and (rows + len(members) > self.max_rows or
                          (rows + len(members)) * max(width, longest) > self.max_tokens):
                self._score_chunk(chunk, pairs, out)
                bar.update(rows)
                chunk, rows, width = [], 0, 0
            chunk.append((context, members))
            rows += len(members)
            width = max(width, longest)
        if chunk:
            self._score_chunk(chunk, pairs, out)
            bar.update(rows)
        bar.close()
        return out  # type: ignore[return-value]

    def _run(self, **kwargs):
        cache = kwargs.pop("cache")
        return self.decoder(**kwargs, **{self.cache_arg: cache}, use_cache=True).last_hidden_state

    def _score_chunk(self, chunk, pairs, out) -> None:
        from transformers import DynamicCache

        dev, dtype = self.device, next(self.model.parameters()).dtype
        lens = torch.tensor([len(c) for c, _ in chunk])
        width = int(lens.max())
        ctx = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
        for g, (c, _) in enumerate(chunk):
            ctx[g, : len(c)] = torch.tensor(c)
        self.notify(kind="score", indices=[members[0] for _, members in chunk], prompt_lengths=lens.tolist(),
                    input_ids=ctx, padding="right")
        cache = DynamicCache(config=self.model.config)
        hidden = self._run(input_ids=ctx.to(dev), attention_mask=(torch.arange(width)[None] < lens[:, None]).long().to(dev),
                           position_ids=torch.arange(width, device=dev)[None].expand(len(chunk), width), cache=cache)
        last = hidden[torch.arange(len(chunk)), lens - 1]  # predicts each answer's first label

        row_group, row_pair = [], []
        for g, (_, members) in enumerate(chunk):
            for i in members:
                row_group.append(g)
                row_pair.append(i)
        rest = [pairs[i][1][:-1] for i in row_pair]  # label tokens read to predict labels 1..n-1
        answer_hidden = None
        if any(rest):
            answer_hidden = self._answers(cache, lens, row_group, row_pair, rest, dev, dtype)

        pieces, targets = [], []
        for r, i in enumerate(row_pair):
            labels = pairs[i][1]
            if not labels:
                continue
            pieces.append(last[row_group[r]][None])
            if len(labels) > 1:
                pieces.append(answer_hidden[r, : len(labels) - 1])
            targets.extend(labels)
        stats = self._head_stats(torch.cat(pieces), torch.tensor(targets, device=dev)) if pieces else None
        start = 0
        for i in row_pair:
            n = len(pairs[i][1])
            lp, mu, sigma, match = (s[start : start + n] for s in stats) if n else ([], [], [], [])
            out[i] = AnswerScores.from_arrays(lp, mu, sigma, match)
            start += n

    def _answers(self, cache, lens, row_group, row_pair, rest, dev, dtype) -> torch.Tensor:
        from transformers import DynamicCache

        n_rows, width = len(row_pair), max(len(r) for r in rest)
        prefix = int(lens.max())
        ids = torch.full((n_rows, width), self.pad_id, dtype=torch.long)
        for r, toks in enumerate(rest):
            if toks:
                ids[r, : len(toks)] = torch.tensor(toks)
        index = torch.tensor(row_group, device=dev)
        shared = DynamicCache(config=self.model.config)
        for layer, entry in enumerate(cache.layers):
            shared.update(entry.keys.index_select(0, index), entry.values.index_select(0, index), layer)
        row_lens = lens[torch.tensor(row_group)]
        q = torch.arange(width)
        prefix_ok = torch.arange(prefix)[None, :] < row_lens[:, None]  # [rows, prefix]
        causal = q[None, :] <= q[:, None]  # [q, k]
        allowed = torch.cat([prefix_ok[:, None, :].expand(n_rows, width, prefix),
                             causal[None].expand(n_rows, width, width)], dim=-1)[:, None]
        self.notify(kind="score", indices=row_pair, prompt_lengths=[0] * n_rows, input_ids=ids, padding="right")
        return self._run(input_ids=ids.to(dev), attention_mask=additive_mask(allowed, dtype).to(dev),
                         position_ids=(row_lens[:, None] + q[None, :]).to(dev), cache=shared)

    def _head_stats(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = []
        for start in range(0, hidden.shape[0], LM_HEAD_ROWS):
            sl = slice(start, start + LM_HEAD_ROWS)
            parts.append(token_stats(self.lm_head(hidden[sl]), targets[sl]))
        return tuple(torch.cat([p[k] for p in parts]) for k in range(4))


__all__ = ["FAST_PATH_MODEL_TYPES", "PrefixScorer", "additive_mask", "cache_kwarg", "supports_fast_path",
           "token_stats"]

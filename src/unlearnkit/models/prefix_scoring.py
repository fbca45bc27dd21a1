"""Teacher-forced scoring of many answers that share prompts: each prompt is read once, nothing is padded.

TOFU scores seven answers per question (gold, paraphrase, five perturbed) after the same
prompt. Here a question's prompt and all its answers are packed into one sequence:
``[prompt | answer 1 | answer 2 | …]``, where each answer attends to the prompt and to
itself only and its positions continue from the prompt's end. Several questions share a
row the same way, rows are filled close to ``row_tokens``, and the LM head runs only
where a label is predicted. Each answer therefore sees exactly the tokens and positions of
a forward over ``prompt + answer`` alone: the values equal the plain forward's up to float
rounding, at about half its cost on TOFU.

``hidden_id`` (``ChatFormat.mask_pad_tokens``) hides that token from every query wherever it
occurs, as an attention mask of ``input_ids != pad_token_id`` does in a plain forward; positions
still count it, as the plain forward's do. For a generation prefill (``visible_positions``) the
prompt's positions count the visible tokens only, as ``model.generate`` numbers them.

Works for decoder-only transformers whose logits are ``lm_head(decoder(x))``
(``supports_fast_path``); other models are scored by the plain forward in ``hf.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from unlearnkit.progress import progress_bar

from unlearnkit.models.scores import AnswerScores

# Architectures whose causal-LM head is a plain projection of the decoder's last hidden state.
FAST_PATH_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2", "smollm3"}
LM_HEAD_ROWS = 128  # positions per LM-head slice: [128, vocab] floats at a time (two such arrays live)


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
    """Per position: log p(target), μ and σ of log p under the model (Min-K%++), argmax == target.

    Works on ``d = logits − max`` in place (``logits`` is consumed): with ``e = exp(d)``,
    ``Z = Σe``, ``log p = d − log Z``, ``μ = Σ e·d / Z − log Z`` and
    ``σ² = Σ e·d² / Z − (Σ e·d / Z)²``. Shifting by the maximum keeps the subtraction
    benign in float32 (the mass sits where d ≈ 0); three passes over the vocabulary instead
    of ten, and one temporary.
    """
    logits = logits.float()
    top, arg = logits.max(-1)
    d = logits.sub_(top[:, None])
    picked = d.gather(-1, target[:, None]).squeeze(-1)
    e = d.exp()
    z = e.sum(-1)
    log_z = z.log()
    e.mul_(d)
    a = e.sum(-1) / z  # E_p[d]
    b = torch.bmm(e.unsqueeze(1), d.unsqueeze(2)).view(-1) / z  # E_p[d²], without a product array
    return picked - log_z, a - log_z, (b - a * a).clamp_min(0).sqrt(), arg == target


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool [.., q, k] (True = may attend) → the additive float mask every attention backend accepts."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


@dataclass
class _Piece:
    """One prompt and some of its answers, laid out contiguously in a row."""

    context: tuple[int, ...]
    members: list[int]  # pair indices
    size: int = 0
    start: int = 0  # offset in its row
    key: int = 0  # the index announced to observers for this prompt (its first pair, or the request)


@dataclass
class _Layout:
    ids: torch.Tensor
    pos: torch.Tensor
    allowed: torch.Tensor | None = None
    heads: list[tuple[int, int]] = field(default_factory=list)  # (row, col) predicting each label, in order
    targets: list[int] = field(default_factory=list)
    order: list[tuple[int, int]] = field(default_factory=list)  # (pair index, number of labels)
    segments: list[tuple[int, int, int, int]] = field(default_factory=list)  # (row, key, start, length)


class KVRecorder:
    """A stand-in KV cache that keeps each layer's keys and values of one forward and attends to nothing else."""

    def __init__(self):
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.layers[layer_idx] = (key_states, value_states)
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


@dataclass
class _Row:
    pieces: list[_Piece] = field(default_factory=list)
    length: int = 0


class PrefixScorer:
    """Scores (context ids, label ids) pairs; ``notify`` announces each forward batch (ECO's hook).

    ``row_tokens`` bounds one packed row; ``batch_tokens`` bounds the rows of one forward. Attention
    inside a row costs its length squared, so short rows in batches of a few are fastest on CPU
    (measured on SmolLM2, 2 cores, oneDNN linears: 384/768 tokens 459 tok/s, 512/1024 528, 1024/2048 502).
    """

    def __init__(self, model, pad_id: int, notify: Callable[..., None] | None = None, row_tokens: int = 512,
                 batch_tokens: int = 1024, hidden_id: int | None = None):
        self.model = model
        self.hidden_id = hidden_id
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.cache_arg = cache_kwarg(self.decoder)
        self.pad_id = pad_id
        self.notify = notify or (lambda **info: None)
        self.row_tokens = max(1, int(row_tokens))
        self.batch_tokens = max(self.row_tokens, int(batch_tokens))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score(self, pairs: Sequence[tuple[list[int], list[int]]], progress: str | None = None) -> list[AnswerScores]:
        for i, (context, _) in enumerate(pairs):
            if not context:
                raise ValueError(f"pair {i}: the context (prompt) has no tokens; nothing predicts the first label")
        rows = self._pack(pairs)
        out: list[AnswerScores | None] = [None] * len(pairs)
        bar = progress_bar(total=len(pairs), desc=progress, leave=False)
        batch: list[_Row] = []
        for row in rows:  # longest first: a batch pads to its first row
            if batch and (len(batch) + 1) * batch[0].length > self.batch_tokens:
                self._forward(batch, pairs, out)
                bar.update(sum(len(p.members) for r in batch for p in r.pieces))
                batch = []
            batch.append(row)
        if batch:
            self._forward(batch, pairs, out)
            bar.update(sum(len(p.members) for r in batch for p in r.pieces))
        bar.close()
        return out  # type: ignore[return-value]

    # -- layout ------------------------------------------------------------------
    def _pack(self, pairs) -> list[_Row]:
        """Pieces (a prompt + the answers that fit with it), first-fit decreasing into rows."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (context, _) in enumerate(pairs):
            groups.setdefault(tuple(context), []).append(i)
        pieces: list[_Piece] = []
        for context, members in groups.items():
            piece = _Piece(context, [], len(context), key=members[0])
            for i in members:
                need = max(len(pairs[i][1]) - 1, 0)  # the last label is predicted, never read
                if piece.members and piece.size + need > self.row_tokens:
                    pieces.append(piece)
                    piece = _Piece(context, [], len(context), key=i)
                piece.members.append(i)
                piece.size += need
            pieces.append(piece)
        pieces.sort(key=lambda p: (-p.size, p.members[0]))
        rows: list[_Row] = []
        for piece in pieces:
            home = next((r for r in rows if r.length + piece.size <= self.row_tokens), None)
            if home is None:
                home = _Row()
                rows.append(home)
            piece.start = home.length
            home.pieces.append(piece)
            home.length += piece.size
        rows.sort(key=lambda r: (-r.length, r.pieces[0].members[0]))
        return rows

    def _forward(self, batch: list[_Row], pairs, out, record: bool = False, visible_positions: bool = False):
        """One packed forward over ``batch``; fills ``out`` for its pairs.

        Returns the last hidden states [rows, width, hidden] and, with ``record``, each layer's
        (keys, values) [rows, kv_heads, width, head_dim] (what a decoder needs to continue after
        a prompt without reading it again). ``visible_positions``: the prompts' positions count
        their visible tokens only (a generation prefill; see the module's doc).
        """
        layout = self._layout(batch, pairs, visible_positions)
        dev, dtype = self.device, next(self.model.parameters()).dtype
        self.notify(kind="score", segments=layout.segments, input_ids=layout.ids)
        recorder = KVRecorder() if record else None
        kwargs = {self.cache_arg: recorder, "use_cache": True} if record else {"use_cache": False}
        hidden = self.decoder(input_ids=layout.ids.to(dev), attention_mask=additive_mask(layout.allowed[:, None], dtype).to(dev),
                              position_ids=layout.pos.to(dev), **kwargs).last_hidden_state
        if layout.heads:
            where = torch.tensor(layout.heads)
            picked = hidden[where[:, 0].to(dev), where[:, 1].to(dev)]
            stats = self._head_stats(picked, torch.tensor(layout.targets, device=dev))
        start = 0
        for i, count in layout.order:
            if count:
                out[i] = AnswerScores.from_arrays(*(s[start : start + count] for s in stats))
            else:
                out[i] = AnswerScores.from_arrays([], [], [], [])
            start += count
        return hidden, (recorder.layers if recorder is not None else None)

    def _layout(self, batch: list[_Row], pairs, visible_positions: bool = False) -> _Layout:
        width = max(max(r.length for r in batch), 1)
        n = len(batch)
        lay = _Layout(ids=torch.full((n, width), self.pad_id, dtype=torch.long),
                      pos=torch.zeros((n, width), dtype=torch.long))
        real = torch.zeros((n, width), dtype=torch.bool)  # tokens of a prompt or answer, not row filler
        ctx_start = torch.arange(width).repeat(n, 1)  # pads attend to themselves only
        ctx_end = torch.arange(width).repeat(n, 1) + 1
        own_start = torch.arange(width).repeat(n, 1)
        for r, row in enumerate(batch):
            for piece in row.pieces:
                c, s = len(piece.context), piece.start
                context = torch.tensor(piece.context)
                lay.ids[r, s : s + c] = context
                real[r, s : s + c] = True
                after = c  # the first answer token's position
                if visible_positions and self.hidden_id is not None:
                    seen = context.ne(self.hidden_id).long().cumsum(0)
                    lay.pos[r, s : s + c] = (seen - 1).clamp_min(0)
                    after = int(seen[-1])
                else:
                    lay.pos[r, s : s + c] = torch.arange(c)
                ctx_start[r, s : s + c], ctx_end[r, s : s + c], own_start[r, s : s + c] = s, s + c, s
                lay.segments.append((r, piece.key, s, c))
                at = s + c
                for i in piece.members:
                    labels = pairs[i][1]
                    read = labels[:-1]  # the last label is predicted, never read
                    k = len(read)
                    if k:
                        lay.ids[r, at : at + k] = torch.tensor(read)
                        real[r, at : at + k] = True
                        lay.pos[r, at : at + k] = after + torch.arange(k)
                        ctx_start[r, at : at + k], ctx_end[r, at : at + k], own_start[r, at : at + k] = s, s + c, at
                    if labels:
                        lay.heads.append((r, s + c - 1))
                        lay.heads.extend((r, at + t) for t in range(k))
                        lay.targets.extend(labels)
                    lay.order.append((i, len(labels)))
                    at += k
        keys = torch.arange(width)[None, None, :]
        query = torch.arange(width)[None, :, None]
        lay.allowed = (((keys >= ctx_start[:, :, None]) & (keys < ctx_end[:, :, None])) |
                       (keys >= own_start[:, :, None])) & (keys <= query)
        if self.hidden_id is not None:
            lay.allowed &= ~(real & lay.ids.eq(self.hidden_id))[:, None, :]
        return lay

    def _head_stats(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = []
        for start in range(0, hidden.shape[0], LM_HEAD_ROWS):
            sl = slice(start, start + LM_HEAD_ROWS)
            parts.append(token_stats(self.lm_head(hidden[sl]), targets[sl]))  # logits consumed in place
        return tuple(torch.cat([p[k] for p in parts]) for k in range(4))


__all__ = ["FAST_PATH_MODEL_TYPES", "KVRecorder", "PrefixScorer", "additive_mask", "cache_kwarg", "supports_fast_path",
           "token_stats"]

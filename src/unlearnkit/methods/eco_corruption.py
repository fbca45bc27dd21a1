"""ECO's embedding corruption: which prompt tokens, which function, and the hook that applies it.

* **Token selection** (``select_positions``): ``entity`` mode takes the tokens of the
  targets' names, aliases, name parts and key fact terms found in the prompt text by the
  project's one matcher (``data/target_matching.TermFinder``: case, separators, accents,
  invisible characters and look-alike letters do not hide a term), mapped to tokens by
  character offsets; ``all`` mode
  takes every prompt token except the last. A flagged prompt in which no entity term
  is found falls back to ``all`` (option ``entity_fallback``; the reference uses a NER
  tagger, which finds *some* entity in nearly every prompt).
* **Corruption functions** (``CORRUPTIONS``) change the selected rows of the input
  embeddings: ``rand_noise_first_n`` adds N(0, σ²) to the first n dims (the default,
  n=1), ``rand_noise_top_k`` adds it to the k dims of largest magnitude,
  ``zero_out_top_k`` zeroes those dims, ``flip_sign_top_k`` flips their sign.
  Noise is seeded per prompt (option seed + the prompt's token ids), so a prompt gets
  the same corruption whatever batch it runs in, and the noise is ``σ·z`` with a fixed
  ``z``, so metrics change smoothly with σ (the σ search relies on it).
* **The hook** (``EmbeddingCorruptor``): a forward hook on the input embedding layer,
  registered only while the guard runs its flagged prompts, acting only on prefill
  (sequence length > 1), only in the thread that registered it, and only on each row's
  PROMPT positions (the answer of a scored pair is never touched). It learns where each
  row's prompt lies from ``HFLanguageModel.observe_batches``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unlearnkit.data.target_matching import TermFinder, compact
from unlearnkit.data.targets import Target

SELECTIONS = ("entity", "all")
MIN_TERM_CHARS = 3  # shorter name parts / fact terms are too ambiguous to match spacing-insensitively


# -- corruption functions ----------------------------------------------------------------
def _top_k_dims(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.abs().topk(min(k, x.shape[-1]), dim=-1).indices


def rand_noise_first_n(x: torch.Tensor, z: torch.Tensor, *, sigma: float, n: int, k: int) -> torch.Tensor:
    """Add σ·z to the first n dims of each row (z ~ N(0, 1), fixed per prompt)."""
    out = x.clone()
    m = min(n, x.shape[-1])
    out[:, :m] = out[:, :m] + sigma * z[:, :m].to(out.dtype)
    return out


def rand_noise_top_k(x: torch.Tensor, z: torch.Tensor, *, sigma: float, n: int, k: int) -> torch.Tensor:
    """Add σ·z to the k dims of largest magnitude of each row."""
    idx = _top_k_dims(x, k)
    return x.clone().scatter_add(-1, idx, sigma * z[:, : idx.shape[-1]].to(x.dtype))


def zero_out_top_k(x: torch.Tensor, z: torch.Tensor, *, sigma: float, n: int, k: int) -> torch.Tensor:
    """Zero the k dims of largest magnitude of each row (σ unused)."""
    return x.clone().scatter(-1, _top_k_dims(x, k), 0.0)


def flip_sign_top_k(x: torch.Tensor, z: torch.Tensor, *, sigma: float, n: int, k: int) -> torch.Tensor:
    """Flip the sign of the k dims of largest magnitude of each row (σ unused)."""
    idx = _top_k_dims(x, k)
    return x.clone().scatter(-1, idx, -x.gather(-1, idx))


CORRUPTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "rand_noise_first_n": rand_noise_first_n,
    "rand_noise_top_k": rand_noise_top_k,
    "zero_out_top_k": zero_out_top_k,
    "flip_sign_top_k": flip_sign_top_k,
}
USES_SIGMA = {"rand_noise_first_n", "rand_noise_top_k"}


# -- which tokens ------------------------------------------------------------------------
def target_terms(targets: Iterable[Target]) -> list[str]:
    """Names and aliases, distinctive name parts and key fact terms of the targets."""
    from unlearnkit.methods.alu_retrieval import fact_terms, name_parts

    names = {n for t in targets for n in t.names}
    out: list[str] = []
    for t in targets:
        out.extend(t.names)
        for name in t.names:
            out.extend(name_parts(name))
        out.extend(fact_terms(t))
    seen, terms = set(), []
    for term in out:
        key = compact(term)
        if key and key not in seen and (len(key) >= MIN_TERM_CHARS or term in names):
            seen.add(key)
            terms.append(term)
    return terms


def prompt_encoding(lm, prompt, chat: bool) -> tuple[str, list[int], list[tuple[int, int]] | None]:
    """The prompt's text, token ids (exactly ``lm.prompt_ids``) and per-token character offsets.

    Offsets are None when the tokenizer cannot give them (slow tokenizers) or they
    would not describe the same ids.
    """
    text = lm.prompt_text(prompt, chat)
    ids = lm.prompt_ids(prompt, chat)
    try:
        enc = lm.tokenizer(text, add_special_tokens=not chat, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return text, ids, None
    if list(enc["input_ids"]) != list(ids):
        return text, ids, None
    return text, ids, [tuple(o) for o in enc["offset_mapping"]]


def entity_positions(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Tokens whose character offsets overlap a span (special tokens, with empty offsets, never do)."""
    out = []
    for i, (start, end) in enumerate(offsets):
        if end > start and any(start < s_end and end > s_start for s_start, s_end in spans):
            out.append(i)
    return out


def all_positions(n_prompt: int) -> list[int]:
    """Every prompt token except the last."""
    return list(range(max(n_prompt - 1, 0)))


def select_positions(lm, prompt, chat: bool, finder: TermFinder, mode: str,
                     fallback_all: bool = True) -> tuple[list[int], list[int], str]:
    """(prompt token ids, positions to corrupt, how they were chosen: entity | all | fallback_all | none)."""
    text, ids, offsets = prompt_encoding(lm, prompt, chat)
    if mode == "all":
        return ids, all_positions(len(ids)), "all"
    positions = entity_positions(offsets, finder.spans(text)) if offsets is not None else []
    if positions:
        return ids, positions, "entity"
    if fallback_all:
        return ids, all_positions(len(ids)), "fallback_all"
    return ids, [], "none"


# -- the hook ----------------------------------------------------------------------------
@dataclass
class PromptPlan:
    """Where and with which noise to corrupt one flagged prompt."""

    ids: list[int]
    positions: list[int]
    how: str
    z: torch.Tensor  # [len(positions), width] standard normal, fixed per prompt

    @classmethod
    def make(cls, ids: list[int], positions: list[int], how: str, width: int, seed: int) -> PromptPlan:
        digest = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).digest()
        gen = torch.Generator().manual_seed((int.from_bytes(digest[:8], "little") ^ seed) & ((1 << 63) - 1))
        z = torch.randn((len(positions), max(width, 1)), generator=gen, dtype=torch.float32)
        return cls(list(ids), list(positions), how, z)


class EmbeddingCorruptor:
    """Context manager: while active, corrupt the prompt embeddings of ``plans`` in ``lm``'s forwards.

    ``plans[i]`` belongs to the i-th prompt of the score/generate call made inside the
    ``with`` block (rows are matched through ``lm.observe_batches``). The hook acts on
    prefill only (sequence length > 1) and only in the thread that entered the block.
    """

    def __init__(self, lm, plans: Sequence[PromptPlan], corruption: str, sigma: float, n: int, k: int):
        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption '{corruption}'")
        self.lm, self.plans = lm, list(plans)
        self.fn = CORRUPTIONS[corruption]
        self.sigma, self.n, self.k = float(sigma), int(n), int(k)
        self._info: dict | None = None
        self._owner = threading.get_ident()
        self._handle = None
        self._observer = None
        self.corrupted_rows = 0  # rows changed on prefill (for tests and accounting)

    def _corrupt(self, rows: torch.Tensor, plan: PromptPlan) -> torch.Tensor:
        """``rows`` (the embeddings at the plan's first ``len(rows)`` positions) corrupted with the plan's noise."""
        z = plan.z[: rows.shape[0]].to(device=rows.device)
        return self.fn(rows, z, sigma=self.sigma, n=self.n, k=self.k).to(rows.dtype)

    def embedded(self, i: int, corrupt: bool = True) -> torch.Tensor:
        """The i-th prompt's input embeddings as the hook leaves them on prefill (its positions corrupted, unless
        ``corrupt`` is false), for callers that feed the model ``inputs_embeds`` themselves (the soft-prompt
        attack through a guard)."""
        plan = self.plans[i]
        embed = self.lm.model.get_input_embeddings()
        with torch.no_grad():
            x = embed(torch.tensor(plan.ids, dtype=torch.long, device=embed.weight.device))
            pos = torch.tensor([p for p in plan.positions if p < len(plan.ids)], dtype=torch.long, device=x.device)
            if corrupt and pos.numel():
                x = x.clone()
                x[pos] = self._corrupt(x.index_select(0, pos), plan)
        return x

    def _observe(self, info: dict) -> None:
        self._info = info

    def _hook(self, module, inputs, output):
        if threading.get_ident() != self._owner or output.dim() != 3 or output.shape[1] <= 1:
            return None  # another thread, or a decode step: leave it alone
        info = self._info
        if info is None or tuple(info["input_ids"].shape) != tuple(output.shape[:2]):
            raise RuntimeError("ECO: an embedding forward ran outside a batch announced by observe_batches; "
                               "refusing to guess which tokens are the prompt")
        out = output
        changed = False
        for row, i, start, n_prompt in info["segments"]:
            plan = self.plans[i]
            if not plan.positions:
                continue
            pos = torch.tensor([start + p for p in plan.positions if p < n_prompt], dtype=torch.long,
                               device=output.device)
            if pos.numel() == 0:
                continue
            if not changed:
                out = output.clone()
                changed = True
            out[row, pos] = self._corrupt(out[row].index_select(0, pos), plan)
            self.corrupted_rows += 1
        self._info = None  # one announced batch, one prefill
        return out if changed else None

    def __enter__(self) -> EmbeddingCorruptor:
        self._owner = threading.get_ident()
        self._observer = self.lm.observe_batches(self._observe)
        self._observer.__enter__()
        try:
            self._handle = self.lm.model.get_input_embeddings().register_forward_hook(self._hook)
        except BaseException:
            self._observer.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._observer is not None:
            self._observer.__exit__(*exc)
            self._observer = None

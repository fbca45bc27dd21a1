"""A transformers causal LM behind the ``LanguageModel`` interface."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from unlearnkit.progress import progress_bar
from transformers import StoppingCriteria, StoppingCriteriaList

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.base import LanguageModel, Prompt, as_messages, cancelled
from unlearnkit.models.chat_format import ChatFormat, has_template, labelled_ids, transcript
from unlearnkit.models import vllm_generation
from unlearnkit.models.choice_scoring import choice_loglikelihoods
from unlearnkit.models.onednn import onednn_linears
from unlearnkit.models.padding import right_pad
from unlearnkit.models.prefix_cache import PrefixCache
from unlearnkit.models.prefix_scoring import PrefixScorer, supports_fast_path, token_stats
from unlearnkit.models.scores import AnswerScores
from unlearnkit.models.slot_decoding import SlotDecoder


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    # bf16 on this kind of CPU runs ~25x slower than fp32: fp32 unless on a GPU.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


class HFLanguageModel(LanguageModel):
    """Wraps a ``PreTrainedModel`` and its tokenizer.

    ``chat_format`` says how chat prompts are built and which answer tokens are labelled
    (``chat_format.py``; OpenUnlearning's preprocessing by default). ``add_eos`` appends the
    end-of-sequence token to answers scored or trained as raw text (``chat=False``).
    """

    def __init__(self, model, tokenizer, name: str = "model", chat_format: ChatFormat | None = None,
                 add_eos: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.chat_format = chat_format or ChatFormat()
        self.add_eos = add_eos
        self.prefix_cache: PrefixCache | None = None  # off unless ``enable_prefix_cache`` (a server turns it on)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model.eval()

    @property
    def system_prompt(self) -> str | None:
        return self.chat_format.system_prompt

    def enable_prefix_cache(self, max_tokens: int = 2048) -> PrefixCache:
        """Greedy generation reuses the keys and values of the start a prompt shares with the previous one
        (``prefix_cache.py``): a server's fixed system prompt is read once, not once per request."""
        if self.prefix_cache is None:
            self.prefix_cache = PrefixCache(max_tokens)
        return self.prefix_cache

    def _reusable_prefixes(self) -> PrefixCache | None:
        """The prefix cache, unless a batch observer (ECO) watches every prompt's tokens in each forward."""
        return None if self.__dict__.get("_batch_observers") else self.prefix_cache

    # -- interface -------------------------------------------------------------
    @property
    def editable(self) -> bool:
        return True

    def torch_module(self):
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        cfg = self.model.config
        return {
            "name": self.name,
            "kind": type(self).__name__,
            "architecture": type(self.model).__name__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "layers": getattr(cfg, "num_hidden_layers", None),
            "hidden_size": getattr(cfg, "hidden_size", None),
            "dtype": str(next(self.model.parameters()).dtype),
        }

    # -- text to ids -------------------------------------------------------------
    def messages(self, prompt: Prompt) -> list[dict[str, str]]:
        return as_messages(prompt, self.chat_format.system_prompt)

    def prompt_text(self, prompt: Prompt, chat: bool = True) -> str:
        if not chat:
            if not isinstance(prompt, str):
                raise TypeError("chat=False needs plain string prompts")
            return prompt
        messages = self.messages(prompt)
        if has_template(self.tokenizer):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return transcript(messages)  # a base model without a template

    def prompt_ids(self, prompt: Prompt, chat: bool = True) -> list[int]:
        return self.tokenizer(self.prompt_text(prompt, chat), add_special_tokens=not chat)["input_ids"]

    def pair_ids(self, prompt: Prompt, answer: str, chat: bool = True) -> tuple[list[int], list[int]]:
        """(context ids, label ids): the model reads context + labels and is scored on the labels."""
        if chat:
            return labelled_ids(self.tokenizer, self.messages(prompt), answer, self.chat_format.labels)
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if self.add_eos and self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]
        return self.prompt_ids(prompt, chat=False), ids

    def label_text(self, label_ids: Sequence[int]) -> str:
        """The labelled tokens as text, decoded the way OpenUnlearning reads its ground truth."""
        return self.tokenizer.decode(list(label_ids), skip_special_tokens=True, clean_up_tokenization_spaces=True)

    @property
    def hidden_id(self) -> int | None:
        """The token id hidden from attention wherever it occurs (``ChatFormat.mask_pad_tokens``), or None."""
        if not self.chat_format.mask_pad_tokens:
            return None
        return self.tokenizer.pad_token_id

    def _hides_tokens(self, prompt_ids) -> bool:
        """Some prompt holds the hidden token id (its attention then differs from a plain engine's)."""
        hidden = self.hidden_id
        return hidden is not None and any(hidden in ids for ids in prompt_ids)

    def visible(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` (1 = real token) with the hidden token id's occurrences set to 0, as OpenUnlearning's collator."""
        hidden = self.hidden_id
        return mask if hidden is None else mask * ids.ne(hidden).to(mask.dtype)

    @property
    def eos_ids(self) -> list[int]:
        """Every token that ends a generation: the tokenizer's EOS and the generation config's."""
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    def encode(self, prompts: Sequence[Prompt], answers: Sequence[str], chat: bool = True,
               max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Right-padded batch with labels = -100 on the context and padding (answer-only loss)."""
        rows = []
        for prompt, answer in zip(prompts, answers, strict=True):
            p, a = self.pair_ids(prompt, answer, chat)
            ids = p + a
            labels = [-100] * len(p) + a
            if max_length is not None and len(ids) > max_length:
                ids, labels = ids[:max_length], labels[:max_length]
            rows.append((ids, labels))
        input_ids, mask = right_pad([ids for ids, _ in rows], self.tokenizer.pad_token_id)
        labels, _ = right_pad([lab for _, lab in rows], -100)
        mask = self.visible(input_ids, mask)
        device = self.device
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}

    # -- scoring -----------------------------------------------------------------
    tokens_are_estimated = False

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def prompt_tokens(self, prompt: Prompt, chat: bool = True) -> int:
        return len(self.prompt_ids(prompt, chat))

    @property
    def context_length(self) -> int | None:
        """The most tokens one sequence may hold (the config's ``max_position_embeddings``), None if unknown."""
        value = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return int(value) if value else None

    def _check_fits(self, pairs, what: str = "answer") -> None:
        """A clear error instead of an attempt to allocate a sequence beyond the model's context."""
        limit = self.context_length
        if not limit:
            return
        for i, (p, a) in enumerate(pairs):
            if len(p) + len(a) > limit:
                from unlearnkit.errors import DataError

                raise DataError(f"{what} {i} of {len(pairs)} is {len(p) + len(a):,} tokens with its prompt, beyond "
                                f"the model's context of {limit:,} tokens: shorten or drop that record")

    @torch.no_grad()
    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None) -> list[AnswerScores]:
        """Per-token scores of each answer's labels; prompts shared by several answers are read once."""
        if len(prompts) != len(answers):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(answers)} answers")
        pairs = [self.pair_ids(p, a, chat) for p, a in zip(prompts, answers)]
        self._check_fits(pairs)
        with onednn_linears(self.model):
            if supports_fast_path(self.model):
                # about batch_size answers of ~32 tokens per forward, packed without padding
                scorer = PrefixScorer(self.model, self.tokenizer.pad_token_id, notify=self._notify_batch,
                                      batch_tokens=max(512, 32 * batch_size), hidden_id=self.hidden_id)
                out = scorer.score(pairs, progress=progress)
            else:
                out = self._score_full(pairs, batch_size, progress)
        for scores, (_, labels) in zip(out, pairs):
            scores.label_text = self.label_text(labels)
        return out

    def _score_full(self, pairs, batch_size, progress) -> list[AnswerScores]:
        """One plain forward per batch of whole sequences (models without the prefix-sharing path)."""
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        out: list[AnswerScores | None] = [None] * len(pairs)
        bar = progress_bar(total=len(order), desc=progress, leave=False)
        for idx in _batches(order, batch_size):
            ids, mask = right_pad([pairs[i][0] + pairs[i][1] for i in idx], self.tokenizer.pad_token_id)
            mask = self.visible(ids, mask)
            self._notify_batch(kind="score", indices=idx, prompt_lengths=[len(pairs[i][0]) for i in idx],
                               input_ids=ids, padding="right")
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for j, i in enumerate(idx):
                n_prompt, n_answer = len(pairs[i][0]), len(pairs[i][1])
                # logits at position t predict token t+1
                sl = logits[j, n_prompt - 1 : n_prompt - 1 + n_answer]
                target = ids[j, n_prompt : n_prompt + n_answer].to(sl.device)
                out[i] = AnswerScores.from_arrays(*token_stats(sl, target))
            bar.update(len(idx))
        bar.close()
        return out  # type: ignore[return-value]

    def choice_loglikelihoods(self, prompts: Sequence[str], continuations: Sequence[str], *,
                              batch_size: int = 16) -> np.ndarray | None:
        """[len(prompts), len(continuations)] log p(continuation | raw-text prompt) in one forward per prompt
        (``choice_scoring``), the values ``score(..., chat=False)`` gives each pair without the appended
        end-of-sequence token; None when the continuations are not one distinct token each after a shared
        prefix (then score the pairs)."""
        return choice_loglikelihoods(self, prompts, continuations, batch_size, notify=self._notify_batch)

    # -- generation --------------------------------------------------------------
    streams = True

    def generate(self, prompts, *, chat=True, max_new_tokens=200, do_sample=False, temperature=1.0,
                 top_p=1.0, batch_size=8, seed=None, progress=None) -> list[str]:
        """Greedy (default) or sampled continuations, cut at the first end-of-sequence token.

        Greedy decoding runs on vLLM for a model on a GPU where vLLM is installed
        (``vllm_generation``) unless a prompt holds a hidden token (vLLM attends to every
        token: ``--no-pad-mask`` lets it run), else on ``slot_decoding.SlotDecoder`` (continuous batching,
        ``batch_size`` slots) where the architecture allows; sampling and other models use
        ``model.generate``.
        """
        return self._generate(prompts, chat, max_new_tokens, do_sample, temperature, top_p, batch_size, seed,
                              progress)

    def stream_generate(self, prompts, *, on_text, chat=True, max_new_tokens=200, do_sample=False, temperature=1.0,
                        top_p=1.0, batch_size=8, seed=None, progress=None) -> list[str]:
        """``generate``, reporting each answer after every decode step (on vLLM: once, whole). The text reported
        is the answer decoded so far, without a character that may still change (an incomplete UTF-8
        sequence, trailing spaces, a space the tokenizer's clean-up may still remove)."""
        made: dict[int, list[int]] = {}

        def on_token(i: int, token: int) -> None:
            tokens = made.setdefault(i, [])
            tokens.append(token)
            on_text(i, self._partial_text(tokens))

        answers = self._generate(prompts, chat, max_new_tokens, do_sample, temperature, top_p, batch_size, seed,
                                 progress, on_token)
        for i, text in enumerate(answers):
            on_text(i, text)
        return answers

    @torch.no_grad()
    def _generate(self, prompts, chat, max_new_tokens, do_sample, temperature, top_p, batch_size, seed, progress,
                  on_token=None) -> list[str]:
        ids = [self.prompt_ids(p, chat) for p in prompts]
        if not do_sample and vllm_generation.enabled(self.model) and not self._hides_tokens(ids):
            new = vllm_generation.generate(self, ids, max_new_tokens, self.eos_ids, progress=progress)
            return [self.decode_generation(toks) for toks in new]
        with onednn_linears(self.model):
            if not do_sample and supports_fast_path(self.model):
                decoder = SlotDecoder(self.model, batch_size, self.eos_ids, self.tokenizer.pad_token_id,
                                      notify=self._notify_batch, hidden_id=self.hidden_id,
                                      prefix_cache=self._reusable_prefixes())
                new = decoder.generate(ids, max_new_tokens, progress=progress, on_token=on_token)
            else:
                new = self._hf_generate(ids, max_new_tokens, do_sample, temperature, top_p, batch_size, seed,
                                        progress, on_token)
        return [self.decode_generation(toks) for toks in new]

    def _partial_text(self, tokens: Sequence[int]) -> str:
        """``decode_generation`` of an unfinished answer, less what the next tokens may still change."""
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=True)
        eos_text = self.tokenizer.eos_token
        if eos_text and eos_text in text:
            text = text.split(eos_text)[0]
        return _UNSETTLED.sub("", text.lstrip().rstrip("\ufffd"))

    @torch.no_grad()
    def score_and_generate(self, score_prompts, score_answers, gen_prompts, *, max_new_tokens=200, batch_size=16,
                           gen_batch_size=8, progress=None) -> tuple[list[AnswerScores], list[str]]:
        """``score(score_prompts, score_answers)`` and greedy ``generate(gen_prompts)`` in one pass.

        Answers whose prompt is also generated from are scored in the forward that prefills
        that prompt for decoding, so each such prompt is read once; the values are those of
        the two separate calls up to float rounding. Without the fast path this is just the two calls.
        A prompt holding a hidden token (``hidden_id``) is read twice: generation numbers its
        positions by the visible tokens (as ``model.generate`` does), scoring by all of them
        (as a plain forward does), so the two cannot share its keys and values.
        """
        if not supports_fast_path(self.model) or (vllm_generation.enabled(self.model)
                                                  and not self._hides_tokens(self.prompt_ids(p) for p in gen_prompts)):
            return (self.score(score_prompts, score_answers, batch_size=batch_size, progress=progress),
                    self.generate(gen_prompts, max_new_tokens=max_new_tokens, batch_size=gen_batch_size,
                                  progress=progress))
        pairs = [self.pair_ids(p, a) for p, a in zip(score_prompts, score_answers)]
        gen_ids = [self.prompt_ids(p) for p in gen_prompts]
        self._check_fits(pairs)
        self._check_fits([(ids, [0] * max_new_tokens) for ids in gen_ids], what="generation prompt (+ max_new_tokens)")
        owner = {}
        for j, ids in enumerate(gen_ids):
            owner.setdefault(tuple(ids), j)
        attached: list[list[int]] = [[] for _ in gen_ids]
        alone = []
        hidden = self.hidden_id
        for i, (context, _) in enumerate(pairs):
            j = None if hidden is not None and hidden in context else owner.get(tuple(context))
            (attached[j] if j is not None else alone).append(i)
        out: list[AnswerScores | None] = [None] * len(pairs)
        with onednn_linears(self.model):
            if alone:
                scorer = PrefixScorer(self.model, self.tokenizer.pad_token_id, notify=self._notify_batch,
                                      batch_tokens=max(512, 32 * batch_size), hidden_id=hidden)
                for i, scores in zip(alone, scorer.score([pairs[i] for i in alone], progress=progress)):
                    out[i] = scores
            decoder = SlotDecoder(self.model, gen_batch_size, self.eos_ids, self.tokenizer.pad_token_id,
                                  notify=self._notify_batch, hidden_id=hidden)
            new, scored = decoder.generate(gen_ids, max_new_tokens, progress=progress,
                                           labels=[[pairs[i][1] for i in members] for members in attached])
        for members, scores in zip(attached, scored):
            for i, s in zip(members, scores):
                out[i] = s
        for scores, (_, labels) in zip(out, pairs):
            scores.label_text = self.label_text(labels)
        return out, [self.decode_generation(toks) for toks in new]

    def decode_generation(self, tokens: Sequence[int]) -> str:
        """Text of generated tokens, as OpenUnlearning reads a generation: special tokens skipped,
        tokenization spaces cleaned up, cut at the first EOS text, stripped."""
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True, clean_up_tokenization_spaces=True)
        eos_text = self.tokenizer.eos_token
        if eos_text and eos_text in text:
            text = text.split(eos_text)[0]
        return text.strip()

    def _hf_generate(self, ids, max_new_tokens, do_sample, temperature, top_p, batch_size, seed, progress,
                     on_token=None):
        if seed is not None:
            torch.manual_seed(seed)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[list[int]] = [[] for _ in ids]
        pad = self.tokenizer.pad_token_id
        eos = self.eos_ids
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "pad_token_id": pad,
                  "eos_token_id": eos}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        bar = progress_bar(total=len(order), desc=progress, leave=False)
        for idx in _batches(order, batch_size):
            criteria = [_StopWhenCancelled()]
            if on_token is not None:
                criteria.append(_ReportTokens(idx, set(eos), on_token))
            kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
            width = max(len(ids[i]) for i in idx)
            batch = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):  # left padding
                batch[j, width - len(ids[i]):] = torch.tensor(ids[i])
                mask[j, width - len(ids[i]):] = 1
            mask = self.visible(batch, mask)  # model.generate numbers positions by the visible tokens
            self._notify_batch(kind="generate", indices=idx, prompt_lengths=[len(ids[i]) for i in idx],
                               input_ids=batch, padding="left")
            gen = self.model.generate(input_ids=batch.to(self.device), attention_mask=mask.to(self.device), **kwargs)
            for j, i in enumerate(idx):
                toks = gen[j, width:].tolist()
                for k, t in enumerate(toks):
                    if t in eos:
                        toks = toks[:k]
                        break
                out[i] = toks
            bar.update(len(idx))
        bar.close()
        return out

    # -- extension point for guards that hook the model ---------------------------
    @contextlib.contextmanager
    def observe_batches(self, callback):
        """Call ``callback(info)`` before each forward batch that ``score``/``generate`` run in this thread.

        ``info`` is a dict: ``kind`` ("score" or "generate"), ``input_ids`` (the batch) and
        ``segments``: one ``(row, prompt_index, start, length)`` per prompt in the batch — the
        prompt of the call's ``prompt_index``-th prompt occupies positions ``start .. start+length-1``
        of ``row`` (a packed row may hold several prompts, each followed by its answers). Hooks on
        the model (ECO) use it to find every prompt's tokens; tokens outside a segment are not prompt.
        """
        entry = (threading.get_ident(), callback)
        observers = self.__dict__.setdefault("_batch_observers", [])
        observers.append(entry)
        try:
            yield
        finally:
            observers.remove(entry)

    def _notify_batch(self, **info) -> None:
        observers = self.__dict__.get("_batch_observers")
        if not observers:
            return
        if "segments" not in info:  # one prompt per row, right- or left-padded
            width = info["input_ids"].shape[1]
            left = info.get("padding") == "left"
            info["segments"] = [(row, i, width - n if left else 0, n)
                                for row, (i, n) in enumerate(zip(info["indices"], info["prompt_lengths"]))]
        me = threading.get_ident()
        for owner, callback in list(observers):
            if owner == me:
                callback(info)

    # -- persistence -------------------------------------------------------------
    def save(self, path: str | Path, base_spec: str | None = None) -> Path:
        """Write a Hugging Face model directory atomically (temp dir, then rename), with its chat format
        (``base_spec`` is not needed: the weights stand alone)."""
        return save_model_dir(self.model, self.tokenizer, path, chat_format=self.chat_format)


# What a tokenizer's clean-up may still change at the end of a partial answer: trailing spaces, and a space
# before an apostrophe or an "n" ("do n" + "'t" decodes as "don't").
_UNSETTLED = re.compile(r"\s+[n']?$")


class _ReportTokens(StoppingCriteria):
    """Reports each row's newest token to ``on_token(prompt index, token)`` after every step of ``model.generate``
    (never stops anything); a row is quiet from its first end-of-sequence token on."""

    def __init__(self, indices: Sequence[int], eos: set[int], on_token):
        self.indices, self.eos, self.on_token = list(indices), eos, on_token
        self.ended: set[int] = set()

    def __call__(self, input_ids, scores, **kwargs):
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if row in self.ended:
                continue
            if token in self.eos:
                self.ended.add(row)
            else:
                self.on_token(self.indices[row], token)
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


class _StopWhenCancelled(StoppingCriteria):
    """Ends ``model.generate`` at the next step once the thread's ``cancellation`` check says so."""

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), cancelled(), dtype=torch.bool, device=input_ids.device)


def save_model_dir(model, tokenizer, path: str | Path, chat_format: ChatFormat | None = None) -> Path:
    """save_pretrained into a sibling temp dir, then swap it in: never a half-written model."""
    from unlearnkit.io import output_failure

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise output_failure(exc, path, "model directory") from exc
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if chat_format is not None:
            chat_format.save(tmp)
        from unlearnkit.io import respect_umask

        respect_umask(tmp)  # mkdtemp made it owner-only
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except (OSError, RuntimeError) as exc:  # a full disk or unwritable place: the old model stays as it was
        if isinstance(exc, UnlearnkitError):
            raise
        raise output_failure(exc, path, "model directory") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return path

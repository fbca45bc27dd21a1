"""A transformers causal LM behind the ``LanguageModel`` interface."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unlearnkit.models.base import LanguageModel, Prompt, as_messages
from unlearnkit.models.scores import AnswerScores


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

    ``system_prompt`` is prepended to every chat prompt (the prompting baseline
    sets it); ``add_eos`` appends the end-of-turn token to scored and trained
    answers so the model learns, and is scored on, where an answer stops.
    """

    def __init__(self, model, tokenizer, name: str = "model", system_prompt: str | None = None,
                 add_eos: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.system_prompt = system_prompt
        self.add_eos = add_eos
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model.eval()

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
    def prompt_text(self, prompt: Prompt, chat: bool = True) -> str:
        if not chat:
            if not isinstance(prompt, str):
                raise TypeError("chat=False needs plain string prompts")
            return prompt
        messages = as_messages(prompt, self.system_prompt)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # A base model without a template: a plain transcript.
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nAssistant:"

    def prompt_ids(self, prompt: Prompt, chat: bool = True) -> list[int]:
        return self.tokenizer(self.prompt_text(prompt, chat), add_special_tokens=not chat)["input_ids"]

    def answer_ids(self, answer: str, add_eos: bool | None = None) -> list[int]:
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if (self.add_eos if add_eos is None else add_eos) and self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]
        return ids

    def encode(self, prompts: Sequence[Prompt], answers: Sequence[str], chat: bool = True,
               max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Right-padded batch with labels = -100 on prompt and padding (answer-only loss)."""
        rows = []
        for prompt, answer in zip(prompts, answers, strict=True):
            p, a = self.prompt_ids(prompt, chat), self.answer_ids(answer)
            ids = p + a
            labels = [-100] * len(p) + a
            if max_length is not None and len(ids) > max_length:
                ids, labels = ids[:max_length], labels[:max_length]
            rows.append((ids, labels))
        width = max(len(r[0]) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        device = self.device
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}

    # -- scoring -----------------------------------------------------------------
    @torch.no_grad()
    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None) -> list[AnswerScores]:
        if len(prompts) != len(answers):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(answers)} answers")
        encoded = [(self.prompt_ids(p, chat), self.answer_ids(a)) for p, a in zip(prompts, answers)]
        order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
        out: list[AnswerScores | None] = [None] * len(encoded)
        pad = self.tokenizer.pad_token_id
        bar = tqdm(total=len(order), desc=progress, disable=progress is None, leave=False)
        for idx in _batches(order, batch_size):
            rows = [encoded[i][0] + encoded[i][1] for i in idx]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            self._notify_batch(kind="score", indices=idx, prompt_lengths=[len(encoded[i][0]) for i in idx],
                               input_ids=ids, padding="right")
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for j, i in enumerate(idx):
                n_prompt, n_answer = len(encoded[i][0]), len(encoded[i][1])
                # logits at position t predict token t+1
                sl = logits[j, n_prompt - 1 : n_prompt - 1 + n_answer].float()
                target = ids[j, n_prompt : n_prompt + n_answer].to(sl.device)
                out[i] = scores_from_logits(sl, target)
            bar.update(len(idx))
        bar.close()
        return out  # type: ignore[return-value]

    # -- generation --------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts, *, chat=True, max_new_tokens=200, do_sample=False, temperature=1.0,
                 top_p=1.0, batch_size=8, seed=None, progress=None) -> list[str]:
        if seed is not None:
            torch.manual_seed(seed)
        texts = [self.prompt_text(p, chat) for p in prompts]
        lengths = [len(self.tokenizer(t, add_special_tokens=not chat)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out: list[str] = [""] * len(texts)
        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "pad_token_id": tok.pad_token_id,
                  "eos_token_id": tok.eos_token_id}
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        bar = tqdm(total=len(order), desc=progress, disable=progress is None, leave=False)
        try:
            for idx in _batches(order, batch_size):
                batch = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=not chat).to(self.device)
                self._notify_batch(kind="generate", indices=idx, prompt_lengths=[lengths[i] for i in idx],
                                   input_ids=batch["input_ids"], padding="left")
                gen = self.model.generate(**batch, **kwargs)
                new = gen[:, batch["input_ids"].shape[1]:]
                for j, i in enumerate(idx):
                    out[i] = tok.decode(new[j], skip_special_tokens=True).strip()
                bar.update(len(idx))
        finally:
            tok.padding_side = old_side
            bar.close()
        return out

    # -- extension point for guards that hook the model ---------------------------
    @contextlib.contextmanager
    def observe_batches(self, callback):
        """Call ``callback(info)`` before each forward batch that ``score``/``generate`` run in this thread.

        ``info`` is a dict: ``kind`` ("score" or "generate"), ``indices`` (each row's position in
        the call's prompt list), ``prompt_lengths`` (prompt tokens per row), ``input_ids`` (the
        batch) and ``padding`` ("right": prompt at positions 0..len-1, the answer after it;
        "left": prompt at the last len positions). Hooks on the model (ECO) use it to find
        each row's prompt tokens.
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
        if observers:
            me = threading.get_ident()
            for owner, callback in list(observers):
                if owner == me:
                    callback(info)

    # -- persistence -------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a Hugging Face model directory atomically (temp dir, then rename)."""
        return save_model_dir(self.model, self.tokenizer, path)


def scores_from_logits(logits: torch.Tensor, target: torch.Tensor) -> AnswerScores:
    """Per-token log-prob, Min-K%++ moments and argmax match from [T, V] logits."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    token_lp = logp.gather(-1, target[:, None]).squeeze(-1)
    mu = (p * logp).sum(-1)
    var = (p * logp.pow(2)).sum(-1) - mu.pow(2)
    sigma = var.clamp_min(0).sqrt()
    match = logits.argmax(-1) == target
    return AnswerScores(
        logprobs=token_lp.cpu().numpy().astype(np.float64),
        mu=mu.cpu().numpy().astype(np.float64),
        sigma=sigma.cpu().numpy().astype(np.float64),
        argmax_match=match.cpu().numpy(),
    )


def save_model_dir(model, tokenizer, path: str | Path) -> Path:
    """save_pretrained into a sibling temp dir, then swap it in: never a half-written model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return path

"""The one model interface: every method, metric, attack and report uses only this.

Weight-editing methods return a model with new weights; inference-time methods
(guards) return an object that wraps a model and answers through the same calls.
Either way evaluation sees a ``LanguageModel``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Union

from unlearnkit.errors import ConfigError

from unlearnkit.models.call_observers import ModelCall, observe_methods, observing
from unlearnkit.models.scores import AnswerScores

Message = Mapping[str, str]
Prompt = Union[str, Sequence[Message]]
"""A user message (str) or a whole conversation (list of {"role", "content"})."""


def as_messages(prompt: Prompt, system: str | None = None) -> list[dict[str, str]]:
    """Normalise a prompt to a chat message list, prepending ``system`` if given."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
    if system is not None and not (messages and messages[0].get("role") == "system"):
        messages = [{"role": "system", "content": system}] + messages
    return messages


def last_user_message(prompt: Prompt) -> str:
    """The text of the final user turn: what guards classify and audit."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(list(prompt)):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""


MAX_WRAP_DEPTH = 16  # guards around guards: deeper chains are treated as cycles
_CANCEL = threading.local()


@contextmanager
def cancellation(check: Callable[[], bool]):
    """While the block runs in this thread, generation stops at the next decode step once ``check()`` is true
    (what it has so far is returned). The gateway's worker uses it to drop work whose client has gone."""
    previous = getattr(_CANCEL, "check", None)
    _CANCEL.check = check
    try:
        yield
    finally:
        _CANCEL.check = previous


def current_cancellation() -> Callable[[], bool] | None:
    """The innermost ``cancellation`` check of this thread (None outside one): hand it to worker threads."""
    return getattr(_CANCEL, "check", None)


def cancelled() -> bool:
    """Whether the innermost ``cancellation`` check of this thread says stop (False outside one)."""
    check = getattr(_CANCEL, "check", None)
    return bool(check is not None and check())


def chain(model):
    """``model``, then the model it wraps, and so on down to the leaf (at most ``MAX_WRAP_DEPTH``)."""
    seen = 0
    while model is not None and seen < MAX_WRAP_DEPTH:
        yield model
        model = getattr(model, "inner", None) if isinstance(model, LanguageModel) else getattr(model, "base", None)
        seen += 1


def leaf(model):
    """The model at the bottom of a guard chain: the one whose weights (or endpoint) answer."""
    last = model
    for m in chain(model):
        last = m
    return last


def weights_model(model):
    """The first model in the chain with a local tokenizer (a weight-backed model), or None (an endpoint)."""
    return next((m for m in chain(model) if hasattr(m, "tokenizer") and hasattr(m, "prompt_ids")), None)


def estimate_tokens(text: str) -> int:
    """About 4 characters a token: the count of a model without a tokenizer (an endpoint)."""
    return -(-len(text) // 4) if text else 0


def estimate_prompt_tokens(prompt: Prompt) -> int:
    """``estimate_tokens`` of a prompt, plus a few tokens per chat message for the template."""
    if isinstance(prompt, str):
        return max(1, estimate_tokens(prompt))
    return sum(4 + estimate_tokens(m.get("content", "")) for m in prompt)


class LanguageModel(ABC):
    """Batched scoring and generation over chat prompts.

    ``chat=True`` (default) applies the model's chat template to each prompt;
    ``chat=False`` treats string prompts as raw text to continue (used for
    verbatim-memorisation tests on plain text).
    """

    name: str = "model"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        observe_methods(cls)  # so that observe_calls sees every model's calls

    def observe_calls(self, callback: Callable[[ModelCall], None]):
        """A context manager: while it is open, ``callback(call)`` after each ``generate`` / ``score`` call this
        model answers (``call_observers.ModelCall``: kind, prompts, chat, answers, outputs)."""
        return observing(self, callback)

    @abstractmethod
    def score(
        self,
        prompts: Sequence[Prompt],
        answers: Sequence[str],
        *,
        chat: bool = True,
        batch_size: int = 16,
        progress: str | None = None,
    ) -> list[AnswerScores]:
        """Teacher-forced per-token scores of each answer after its prompt."""

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        chat: bool = True,
        max_new_tokens: int = 200,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 8,
        seed: int | None = None,
        progress: str | None = None,
    ) -> list[str]:
        """Continue each prompt; greedy unless ``do_sample``."""

    streams: bool = False
    """Whether ``stream_generate`` reports answers while they are generated (False: once each is whole)."""

    def stream_generate(self, prompts: Sequence[Prompt], *, on_text: Callable[[int, str], None],
                        **kwargs) -> list[str]:
        """``generate`` (same arguments, same answers), calling ``on_text(i, text)`` with prompt ``i``'s answer
        so far as it grows. The returned answers are the final ones; the texts passed to ``on_text`` are progress
        (each normally extends the last; a tokenizer's clean-up may revise a few characters at the end) and may
        come from other threads. This default, for models and guards that must see a whole answer before they
        can give it (an agentic guard's critic), reports each answer once, whole."""
        answers = self.generate(prompts, **kwargs)
        for i, text in enumerate(answers):
            on_text(i, text)
        return answers

    @property
    def inner(self) -> LanguageModel | None:
        """The model this one wraps (a guard's ``base``); None for a leaf: weights or an endpoint."""
        return getattr(self, "base", None)

    @property
    def context_length(self) -> int | None:
        """The most tokens one sequence may hold, when known."""
        inner = self.inner
        return inner.context_length if inner is not None else None

    # Token counts: the wrapped model's, else an estimate of ~4 characters a token (an endpoint without a
    # tokenizer). ``tokens_are_estimated`` says which.
    @property
    def tokens_are_estimated(self) -> bool:
        inner = self.inner
        return inner.tokens_are_estimated if inner is not None else True

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone (no special tokens)."""
        inner = self.inner
        return inner.count_tokens(text) if inner is not None else estimate_tokens(text)

    def prompt_tokens(self, prompt: Prompt, chat: bool = True) -> int:
        """Tokens of ``prompt`` as this model's template renders it."""
        inner = self.inner
        return inner.prompt_tokens(prompt, chat) if inner is not None else estimate_prompt_tokens(prompt)

    @property
    def editable(self) -> bool:
        """Whether ``torch_module`` exposes weights a method may change."""
        return False

    def torch_module(self):  # pragma: no cover - overridden by weight-backed models
        raise TypeError(f"{self.name} has no weights to edit (it is an inference-time guard)")

    def save(self, path: str | Path, base_spec: str | None = None) -> Path:
        """Write this model where ``load_model(path)`` reads it back, and return ``path``.

        Weight-backed models write a Hugging Face directory; guards write their settings and targets and name
        the model they wrap by ``base_spec`` (the spec ``load_model`` takes). Endpoints cannot be saved."""
        raise ConfigError(f"{self.name} cannot be saved: it is served elsewhere (save the model behind it there)")

    def describe(self) -> dict:
        """A JSON-able description, recorded in every result file."""
        return {"name": self.name, "kind": type(self).__name__}

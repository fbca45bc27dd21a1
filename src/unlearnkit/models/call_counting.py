"""Calls and tokens that reach the model at the bottom of a guard chain: the cost of answering a query."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from unlearnkit.models.base import leaf
from unlearnkit.models.call_observers import ModelCall


@dataclass
class CallCounter:
    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


@contextmanager
def count_calls(model):
    """Count the calls and tokens reaching the underlying model while the block runs.

    Observes the bottom model's ``generate`` and ``score`` (``LanguageModel.observe_calls``): a generated
    prompt counts its prompt and output tokens, a scored pair its prompt and answer tokens, by the bottom
    model's own token counts. Backends a guard keeps elsewhere (e.g. a remote judge) are not counted.
    """
    lm = leaf(model)
    counter = CallCounter()

    def add(call: ModelCall) -> None:
        counter.calls += len(call.prompts)
        if call.kind == "generate":
            counter.prompt_tokens += sum(lm.prompt_tokens(p, call.chat) for p in call.prompts)
            counter.output_tokens += sum(lm.count_tokens(o) for o in call.outputs)
        else:
            counter.prompt_tokens += sum(lm.prompt_tokens(p, call.chat) + lm.count_tokens(a)
                                         for p, a in zip(call.prompts, call.answers))

    with lm.observe_calls(add):
        yield counter

"""Observers of the ``generate`` and ``score`` calls one model answers (``LanguageModel.observe_calls``).

Each ``LanguageModel`` subclass has the ``generate`` / ``score`` it defines wrapped once, when the class
is made (``observe_methods``). A call that reaches a model with observers tells each of them, once it
has returned, what was asked and answered (a ``ModelCall``). Only the call a caller makes is reported: a
subclass's method that runs its parent's through ``super()`` is one call, not two. Models need not do
anything for it, so a guard's wrapped model is observed whatever kind of model it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

OBSERVED = ("generate", "score")
_KEY = "_call_observers"


@dataclass(frozen=True)
class ModelCall:
    """One returned ``generate`` or ``score`` call."""

    kind: str  # "generate" or "score"
    prompts: Sequence[Any]
    chat: bool
    outputs: Sequence[Any]  # generate: the texts; score: the AnswerScores
    answers: Sequence[str] = ()  # score: the answers scored


def _observed(name: str, method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self, prompts, *args, **kwargs):
        out = method(self, prompts, *args, **kwargs)
        observers = self.__dict__.get(_KEY)
        if observers and getattr(type(self), name) is wrapper:  # the caller's call, not a super() call
            answers = (args[0] if args else kwargs.get("answers", ())) if name == "score" else ()
            call = ModelCall(kind=name, prompts=prompts, chat=kwargs.get("chat", True), outputs=out,
                             answers=answers)
            for callback in list(observers):
                callback(call)
        return out

    return wrapper


def observe_methods(cls: type) -> None:
    """Wrap the ``generate`` / ``score`` that ``cls`` itself defines (abstract ones stay as they are)."""
    for name in OBSERVED:
        method = cls.__dict__.get(name)
        if callable(method) and not getattr(method, "__isabstractmethod__", False):
            setattr(cls, name, _observed(name, method))


@contextmanager
def observing(model, callback: Callable[[ModelCall], None]):
    """While the block runs, ``callback(call)`` after every ``generate`` / ``score`` call ``model`` answers
    (from any thread)."""
    observers = model.__dict__.setdefault(_KEY, [])
    observers.append(callback)
    try:
        yield
    finally:
        observers.remove(callback)
        if not observers:
            model.__dict__.pop(_KEY, None)

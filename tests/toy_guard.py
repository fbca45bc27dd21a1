"""A toy guard method for the test that any registered guard is servable: it answers every question
with a fixed sentence unless the question names one of its targets, which it refuses."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.methods.base import option
from unlearnkit.methods.guards import Guard, GuardMethod


@dataclass
class ToyOptions:
    reply: str = option("toy says hello", "what the toy guard answers")


class ToyGuard(Guard):
    method = "toy"

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        return self.base.score(prompts, answers, chat=chat, batch_size=batch_size, progress=progress)

    def generate(self, prompts, *, chat=True, **kwargs):
        return [self.options.reply for _ in prompts]


class Toy(GuardMethod):
    name = "toy"
    summary = "A test guard."
    Options = ToyOptions
    guard_class = ToyGuard

"""Many-shot attack: a long chat history of benign Q/A turns, then the forget question.

The benign turns are retain records (questions the model should answer). The
number of shots grows until the prompt fills the model's context: the prefix is
fitted with the model's own tokenizer and chat template (binary search over the
number of shots, since the token count grows with it), leaving room for the
answer (``max_new_tokens``) and a safety ``margin`` for what a guard may add.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from unlearnkit.attacks.base import Attack, AttackContext, AttackSkipped
from unlearnkit.data.records import QARecord
from unlearnkit.models.base import Prompt, estimate_prompt_tokens
from unlearnkit.options import option


def model_token_counter(model) -> tuple[Callable[[Prompt], int], int | None]:
    """(count tokens of a chat prompt as the model sees it, the model's context length or None)."""
    return model.prompt_tokens, model.context_length


approx_tokens = estimate_prompt_tokens  # the count of a model without a tokenizer


def shots_messages(shots: Sequence[QARecord], question: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for s in shots:
        messages.append({"role": "user", "content": s.question})
        messages.append({"role": "assistant", "content": s.answer})
    messages.append({"role": "user", "content": question})
    return messages


def fit_shots(order: Sequence[QARecord], question: str, count: Callable[[Prompt], int], budget: int) -> int:
    """The largest n <= len(order) whose n-shot prompt has at most ``budget`` tokens (0 if none fits)."""
    lo, hi = 0, len(order)
    if count(shots_messages(order[:hi], question)) <= budget:
        return hi
    while lo < hi:  # invariant: n=lo fits (or lo=0), n=hi does not
        mid = (lo + hi + 1) // 2
        if count(shots_messages(order[:mid], question)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class ManyShotOptions:
    context_limit: int | None = option(None, "context length to fill (none = the model's own)", minimum=1)
    max_new_tokens: int = option(64, "room kept for the answer (default: the run's max_new_tokens)", minimum=1)
    margin: int = option(32, "tokens kept free besides the answer", minimum=0)
    n_shots: int | None = option(None, "shots per prompt (none = as many as fit)", minimum=1)
    max_shots: int = option(128, "shots per prompt at most", minimum=1)
    repeat: bool = option(True, "reuse retain turns when they run out before the context is full")


class ManyShot(Attack):
    """N benign retain Q/A turns before the forget question, N as large as the context allows.

    ``n_shots`` fixes N (still cut to fit); ``max_shots`` caps the search: the cost is the prefill of every
    prompt, about linear in its length plus a quadratic attention term, so a full 8k context costs each
    question ~10x what 16 shots do (``budget()`` records the cap and the shots used); ``repeat`` reuses
    retain records (in a
    fresh shuffled order each pass) when there are fewer than N. The shot order is
    drawn from ``seed`` and differs per record.
    """

    name = "many_shot"
    Options = ManyShotOptions
    summary = "benign Q/A chat turns from retain data before the forget question, filling the context"

    def __init__(self, retain_records: Sequence[QARecord] = (), count_tokens: Callable[[Prompt], int] | None = None,
                 context_limit: int | None = None, max_new_tokens: int = 64, margin: int = 32,
                 n_shots: int | None = None, max_shots: int = 128, repeat: bool = True):
        self.retain = list(retain_records)
        self.count = count_tokens or approx_tokens
        self.context_limit = context_limit
        self.max_new_tokens = int(max_new_tokens)
        self.margin = int(margin)
        self.n_shots = None if n_shots is None else int(n_shots)
        self.max_shots = int(max_shots)
        self.repeat = repeat
        self.shots_used: list[int] = []

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        count, limit = model_token_counter(ctx.model) if ctx.model is not None else (approx_tokens, None)
        options.setdefault("context_limit", ctx.context_limit or limit)
        options.setdefault("max_new_tokens", ctx.max_new_tokens)
        return cls(retain_records=ctx.retain_records, count_tokens=count, **options)

    @property
    def token_budget(self) -> int | None:
        if self.context_limit is None:
            return None
        return self.context_limit - self.max_new_tokens - self.margin

    def _order(self, rng: random.Random, exclude: set[str], want: int) -> list[QARecord]:
        pool = [r for r in self.retain if not (r.subject and r.subject in exclude)]
        if not pool:
            return []
        order: list[QARecord] = []
        while len(order) < want:
            order.extend(rng.sample(pool, len(pool)))
            if not self.repeat:
                break
        return order[:want]

    def build(self, records, seed=0):
        if not self.retain:
            raise AttackSkipped("many-shot needs retain records for its benign turns; none were given")
        want = self.n_shots if self.n_shots is not None else self.max_shots
        if self.token_budget is None and self.n_shots is None:
            raise AttackSkipped("many-shot needs the model's context length (or n_shots): the model exposes no "
                                "max_position_embeddings and no context_limit was given")
        rng = random.Random(f"many_shot:{seed}")
        prompts: list[Prompt | None] = []
        self.shots_used = []
        for r in records:
            order = self._order(rng, {r.subject} if r.subject else set(), want)
            n = len(order) if self.token_budget is None else fit_shots(order, r.question, self.count,
                                                                       self.token_budget)
            prompts.append(shots_messages(order[:n], r.question))
            self.shots_used.append(n)
        return prompts

    def budget(self):
        return {"max_shots": self.max_shots, "n_shots": self.n_shots, "context_limit": self.context_limit,
                "token_budget": self.token_budget,
                "mean_shots": sum(self.shots_used) / len(self.shots_used) if self.shots_used else None}

    def describe(self):
        out = super().describe()
        out.update(context_limit=self.context_limit, token_budget=self.token_budget, shots_used=list(self.shots_used),
                   mean_shots=sum(self.shots_used) / len(self.shots_used) if self.shots_used else None)
        return out

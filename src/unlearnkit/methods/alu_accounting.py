"""ALU's accounting: per-role LLM calls, tokens and seconds of each query (``ALUTrace``) and over all queries.

Token counts come from the endpoint's ``usage`` (remote), the tokenizer (local models), or an estimate of
4 characters per token (other backends; ``estimated_tokens`` is set in the trace).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from unlearnkit.models.base import LanguageModel

ROLES = ("vanilla", "audit", "erase", "critic", "composer")
"""Accounting keys: ``audit`` and ``erase`` are AuditErase's check and rewrite."""


@dataclass
class RoleStats:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: RoleStats) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.seconds += other.seconds


@dataclass
class ALUTrace:
    """What happened for one query (operator-facing: it names the retrieved targets).

    ``path``: ``clean:retrieval`` (nothing relevant: one LLM call), ``clean:judge`` (the audit
    judge found no leak), ``refused:ratings`` (mean of the J best ratings < tau),
    ``refused:final-check`` (the composed answer still named a target or key term) or
    ``sanitised`` (the composed answer was returned).
    """

    query: str
    path: str = ""
    answer: str = ""
    retrieved: list[dict] = field(default_factory=list)
    verdict: str | None = None
    candidates: list[str] = field(default_factory=list)
    ratings: list[float] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    leaked_terms: list[str] = field(default_factory=list)
    roles: dict[str, RoleStats] = field(default_factory=lambda: {r: RoleStats() for r in ROLES})
    retrieval_seconds: float = 0.0
    seconds: float = 0.0
    estimated_tokens: bool = False

    @property
    def llm_calls(self) -> int:
        return sum(r.calls for r in self.roles.values())

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.roles.values())

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.roles.values())

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(llm_calls=self.llm_calls, prompt_tokens=self.prompt_tokens,
                   completion_tokens=self.completion_tokens)
        return out


def backend_token_counts(backend: LanguageModel, prompts: list, outputs: list[str], chat: bool
                         ) -> tuple[list, list, bool]:
    """(prompt tokens per prompt, tokens per output, whether they are estimates) by the backend's own counts;
    zeros, marked estimated, when the backend cannot count."""
    try:
        return ([backend.prompt_tokens(x, chat) for x in prompts], [backend.count_tokens(o) for o in outputs],
                backend.tokens_are_estimated)
    except Exception:  # noqa: BLE001 - accounting must never break an answer
        return [0] * len(prompts), [0] * len(outputs), True


def charge(traces: Sequence[ALUTrace], role: str, prompt_tokens: Sequence[int], completion_tokens: Sequence[int],
           seconds_each: float, estimated: bool) -> None:
    """Book one ``role`` call per trace (the i-th trace's call took the i-th token counts)."""
    for trace, p, c in zip(traces, prompt_tokens, completion_tokens):
        stats = trace.roles[role]
        stats.calls += 1
        stats.prompt_tokens += int(p)
        stats.completion_tokens += int(c)
        stats.seconds += seconds_each
        trace.estimated_tokens |= estimated


def new_totals() -> dict:
    """The cumulative figures of a guard: queries, queries per path, and ``RoleStats`` per role."""
    return {"queries": 0, "paths": Counter(), "roles": {r: RoleStats() for r in ROLES}}


def add_to_totals(totals: dict, trace: ALUTrace) -> None:
    totals["queries"] += 1
    totals["paths"][trace.path] += 1
    for role, stats in trace.roles.items():
        totals["roles"][role].add(stats)


def totals_json(totals: dict) -> dict:
    return {"queries": totals["queries"], "paths": dict(totals["paths"]),
            "roles": {r: dataclasses.asdict(s) for r, s in totals["roles"].items()}}

"""Few-shot attack (Doshi & Stickland, arXiv 2411.12103): k question/answer examples from the same domain in
context, then the forget question.

The examples are retain records about *other* subjects (never the person asked about, never the answer
asked for), drawn by the seed: they show the model the format and the domain, which is what brought forgotten
knowledge back in the paper.
"""

from __future__ import annotations

import random

from dataclasses import dataclass

from unlearnkit.attacks.base import Attack, AttackContext, AttackSkipped
from unlearnkit.attacks.many_shot import shots_messages
from unlearnkit.options import check_values, option


@dataclass
class FewShotOptions:
    k: int = option(4, "Q/A examples shown before the question", minimum=1)


class FewShot(Attack):
    name = "few_shot"
    summary = "k same-domain Q/A examples about other subjects in context, then the question"

    def __init__(self, k: int = 4, retain_records=()):
        check_values(FewShotOptions, {"k": k}, f"attack '{self.name}'")
        self.k = int(k)
        self.retain_records = list(retain_records)

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        options.setdefault("retain_records", ctx.retain_records)
        return cls(**options)

    def describe(self):
        return {**super().describe(), "k": self.k}

    def budget(self):
        return {"k": self.k}

    def build(self, records, seed=0):
        if not self.retain_records:
            raise AttackSkipped("few_shot needs retain records (same-domain examples about other subjects)")
        rng = random.Random(f"few_shot:{seed}")
        out = []
        for r in records:
            pool = [s for s in self.retain_records
                    if s.answer.strip() != r.answer.strip() and (not r.subject or s.subject != r.subject)]
            if not pool:
                out.append(None)
                continue
            out.append(shots_messages(rng.sample(pool, min(self.k, len(pool))), r.question))
        return out

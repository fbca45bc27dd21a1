"""Best-of-N sampling: ask each forget question N times at temperature T; a leak if any sample leaks.

Greedy decoding shows the single most likely answer; an unlearned model can still put enough probability
on the forgotten one that some samples say it. Sample j uses seed ``seed + j``, so the attack is reproducible and
the samples of a smaller N are those of a larger one (the leak can only grow with N).

Cost: N sampled passes over the questions, each one generation call (all questions in the decoder's slots at
once). ``n`` (default 8) and ``temperature`` (default 1.0, plain sampling) are the budget, recorded in the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.attacks.base import Attack, score_generations
from unlearnkit.options import check_values, option


@dataclass
class BestOfNOptions:
    n: int = option(8, "samples per question", minimum=1)
    temperature: float = option(1.0, "sampling temperature", minimum=0, exclusive_minimum=True)
    top_p: float = option(1.0, "nucleus sampling mass", minimum=0, maximum=1, exclusive_minimum=True)


class BestOfN(Attack):
    name = "best_of_n"
    summary = "N sampled answers per question; a leak if any one leaks"
    Options = BestOfNOptions

    def __init__(self, n: int = 8, temperature: float = 1.0, top_p: float = 1.0):
        check_values(BestOfNOptions, {"n": n, "temperature": temperature, "top_p": top_p}, f"attack '{self.name}'")
        self.n, self.temperature, self.top_p = int(n), float(temperature), float(top_p)

    def describe(self):
        return {**super().describe(), "n_samples": self.n, "temperature": self.temperature, "top_p": self.top_p}

    def budget(self):
        return {"n_samples": self.n, "temperature": self.temperature, "top_p": self.top_p}

    def build(self, records, seed=0):
        return [r.question for r in records]

    def run(self, model, records, ctx):
        prompts = self.build(records, ctx.seed)
        samples = [model.generate(prompts, max_new_tokens=ctx.max_new_tokens, batch_size=ctx.batch_size,
                                  do_sample=True, temperature=self.temperature, top_p=self.top_p, seed=ctx.seed + j)
                   for j in range(self.n)]
        scored = [score_generations(records, gens)["per_example"] for gens in samples]
        rows = []
        for i, r in enumerate(records):
            per = [s[i] for s in scored]
            best = max(per, key=lambda x: (x["keyword_hit"], x["rouge"]))
            rows.append({**best, "prompt": r.question, "samples_leaking": sum(x["keyword_hit"] for x in per),
                         "n_samples": self.n})
        n = len(rows)
        return {"n": n, "n_samples": self.n, "temperature": self.temperature,
                "leak_rate": sum(x["keyword_hit"] for x in rows) / n,
                "rouge_l_recall": sum(x["rouge"] for x in rows) / n,
                "sample_leak_rate": sum(x["samples_leaking"] for x in rows) / (n * self.n),
                "per_example": rows, "n_records": n}

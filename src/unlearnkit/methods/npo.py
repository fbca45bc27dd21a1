"""NPO: −(2/β)·E log σ(−β·(log πθ(y|x) − log πref(y|x))) on D_f, plus α·NLL(D_r).

The reference log-probs of the forget set are computed once, before the first
step, by the frozen original model: no second model is kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnkit.methods.base import WeightEditingMethod, option
from unlearnkit.methods.losses import npo_loss, sequence_logprob
from unlearnkit.methods.retain_terms import RETAIN_LOSSES, retain_loss


@dataclass
class NPOOptions:
    beta: float = option(0.1, "inverse temperature β of the NPO loss", minimum=0, exclusive_minimum=True)
    alpha: float = option(1.0, "weight of the retain term", minimum=0)
    retain_loss: str = option("nll", "retain term: 'nll' or 'kl' to the frozen original", choices=RETAIN_LOSSES)


def reference_sequence_logprobs(ctx) -> torch.Tensor:
    """log πref(y|x) for every forget record, computed with the model before training."""
    lm = ctx.lm
    scores = lm.score([r.question for r in ctx.forget_records], [r.answer for r in ctx.forget_records])
    return torch.tensor([s.sequence_logprob for s in scores], dtype=torch.float32)


class NPO(WeightEditingMethod):
    name = "npo"
    summary = "Negative preference optimisation on forget, NLL on retain."
    Options = NPOOptions

    def setup(self, ctx):
        ctx.state["ref_logp"] = reference_sequence_logprobs(ctx)
        if self.options.retain_loss == "kl":
            ctx.prepare_reference()

    def forget_loss(self, ctx, forget):
        seq, _ = sequence_logprob(ctx.forward(forget).logits, forget["labels"])
        ref = ctx.state["ref_logp"][forget["index"]].to(seq.device)
        return npo_loss(seq, ref, self.options.beta)

    def loss(self, ctx, forget, retain):
        f = self.forget_loss(ctx, forget)
        r = retain_loss(ctx, retain, self.options.retain_loss)
        return f + self.options.alpha * r, {"forget_loss": float(f.detach()), "retain_loss": float(r.detach())}

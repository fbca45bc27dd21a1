"""SimNPO: −(2/β)·E log σ(−β·log πθ(y|x)/|y| − δ) on D_f (no reference), plus γ·NLL(D_r)."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.methods.base import WeightEditingMethod, option
from unlearnkit.methods.losses import nll, sequence_logprob, simnpo_loss


@dataclass
class SimNPOOptions:
    beta: float = option(4.5, "inverse temperature β", minimum=0, exclusive_minimum=True)
    delta: float = option(0.0, "reward margin δ")
    gamma: float = option(0.125, "weight γ of the retain NLL", minimum=0)


class SimNPO(WeightEditingMethod):
    name = "simnpo"
    summary = "Length-normalised, reference-free NPO on forget, NLL on retain."
    Options = SimNPOOptions

    def loss(self, ctx, forget, retain):
        seq, lengths = sequence_logprob(ctx.forward(forget).logits, forget["labels"])
        f = simnpo_loss(seq, lengths, self.options.beta, self.options.delta)
        r = nll(ctx.forward(retain).logits, retain["labels"])
        return f + self.options.gamma * r, {"forget_loss": float(f.detach()), "retain_nll": float(r.detach())}

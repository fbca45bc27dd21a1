"""GradDiff: −NLL(D_f) + α·(NLL(D_r) or KL to the frozen original on D_r)."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.methods.base import WeightEditingMethod, option
from unlearnkit.methods.losses import nll
from unlearnkit.methods.retain_terms import RETAIN_LOSSES, retain_loss


@dataclass
class GradDiffOptions:
    retain_loss: str = option("nll", "retain term: 'nll' on the retain set or 'kl' to the frozen original",
                              choices=RETAIN_LOSSES)
    alpha: float = option(1.0, "weight of the retain term", minimum=0)


class GradDiff(WeightEditingMethod):
    name = "grad_diff"
    summary = "Gradient ascent on forget, descent on retain (NLL or KL)."
    Options = GradDiffOptions

    def setup(self, ctx):
        if self.options.retain_loss == "kl":
            ctx.prepare_reference()

    def loss(self, ctx, forget, retain):
        forget_nll = nll(ctx.forward(forget).logits, forget["labels"])
        r = retain_loss(ctx, retain, self.options.retain_loss)
        loss = -forget_nll + self.options.alpha * r
        return loss, {"forget_nll": float(forget_nll.detach()), "retain_loss": float(r.detach())}

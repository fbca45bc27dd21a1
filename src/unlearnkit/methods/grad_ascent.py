"""GradAscent: maximise the forget-set NLL (loss = −NLL(D_f))."""

from __future__ import annotations

from unlearnkit.methods.base import WeightEditingMethod
from unlearnkit.methods.losses import nll


class GradAscent(WeightEditingMethod):
    name = "grad_ascent"
    summary = "Gradient ascent on the forget set; no retain term."
    uses_retain = False

    def loss(self, ctx, forget, retain):
        forget_nll = nll(ctx.forward(forget).logits, forget["labels"])
        return -forget_nll, {"forget_nll": float(forget_nll.detach())}

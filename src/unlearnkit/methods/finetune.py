"""Supervised fine-tuning (answer-only NLL): how target and retain models are made."""

from __future__ import annotations

from unlearnkit.methods.base import WeightEditingMethod
from unlearnkit.methods.losses import nll


class FineTune(WeightEditingMethod):
    name = "finetune"
    summary = "Minimise the answer NLL of the given data (learning, not unlearning)."
    uses_retain = False

    def loss(self, ctx, forget, retain):
        loss = nll(ctx.forward(forget).logits, forget["labels"])
        return loss, {"nll": float(loss.detach())}

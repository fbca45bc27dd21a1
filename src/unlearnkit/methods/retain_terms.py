"""The retain-side terms several methods share: NLL on D_r, or KL to the frozen original."""

from __future__ import annotations

from unlearnkit.methods.losses import kl_to_reference, nll

RETAIN_LOSSES = ("nll", "kl")


def retain_loss(ctx, batch, kind: str):
    """NLL(D_r) or KL(p_orig || p_θ) on the retain batch."""
    logits = ctx.forward(batch).logits
    if kind == "kl":
        return kl_to_reference(logits, ctx.reference_forward(batch).logits, batch["labels"])
    return nll(logits, batch["labels"])

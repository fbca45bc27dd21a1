"""The retain-side terms several methods share: NLL on D_r, or KL to the frozen original."""

from __future__ import annotations

from unlearnkit.errors import ConfigError
from unlearnkit.methods.losses import kl_to_reference, nll

RETAIN_LOSSES = ("nll", "kl")


def check_retain_loss(name: str) -> None:
    if name not in RETAIN_LOSSES:
        raise ConfigError(f"retain_loss must be one of {', '.join(RETAIN_LOSSES)} (got '{name}')")


def retain_loss(ctx, batch, kind: str):
    """NLL(D_r) or KL(p_orig || p_θ) on the retain batch."""
    logits = ctx.forward(batch).logits
    if kind == "kl":
        return kl_to_reference(logits, ctx.reference_forward(batch).logits, batch["labels"])
    return nll(logits, batch["labels"])

"""Gradient helpers shared by the methods that edit gradients (BLUR, GRIN).

A "gradient" here is a list with one tensor (or None, meaning zero) per
parameter of a fixed parameter list, so no method ever builds one giant
flattened copy of the model. Inner products accumulate in float64 across
tensors (each tensor's own dot product runs in float32 or better).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Grads = list[torch.Tensor | None]


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters that train (the Trainer leaves requires_grad only on those; LoRA: the adapters)."""
    return [p for p in model.parameters() if p.requires_grad]


def take_grads(params: Sequence[torch.nn.Parameter]) -> Grads:
    """Move each parameter's ``.grad`` out (no copy) and leave ``.grad`` empty."""
    out: Grads = []
    for p in params:
        out.append(p.grad)
        p.grad = None
    return out


def current_grads(params: Sequence[torch.nn.Parameter]) -> Grads:
    return [p.grad for p in params]


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.dtype not in (torch.float32, torch.float64):
        a, b = a.float(), b.float()
    return float(torch.dot(a.reshape(-1), b.reshape(-1).to(a.dtype)))


def dot(a: Grads, b: Grads) -> float:
    """Global inner product <a, b> over all tensors (None counts as zero)."""
    total = 0.0
    for x, y in zip(a, b, strict=True):
        if x is not None and y is not None:
            total += _dot(x, y)
    return total


def sq_norm(a: Grads) -> float:
    """Global squared norm ||a||²."""
    return dot(a, a)


def combine_into(params: Sequence[torch.nn.Parameter], a: Grads, alpha: float, b: Grads, beta: float) -> None:
    """Write ``alpha·a + beta·b`` into each parameter's ``.grad`` (reusing ``a``'s storage when possible)."""
    for p, x, y in zip(params, a, b, strict=True):
        if x is None and y is None:
            p.grad = None
            continue
        if x is None:
            out = y.mul(beta)
        else:
            out = x if alpha == 1.0 else x.mul_(alpha)
            if y is not None and beta != 0.0:
                out.add_(y, alpha=beta)
        p.grad = out

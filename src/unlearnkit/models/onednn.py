"""Inference through oneDNN's fp32 GEMM with prepacked weights.

PyTorch's CPU ``linear`` runs on MKL, which on AMD processors takes a slow code path: on
this project's 2-core AMD EPYC, a SmolLM2-sized projection reaches 85-165 GFLOP/s with MKL
and 260-400 GFLOP/s through ``torch.ops.mkldnn._linear_pointwise`` with a weight reordered
once for oneDNN (the kernel ``torch.compile`` itself emits for CPU linears; measured by
``benchmarks/eval_throughput.py``). Results agree with MKL's to float32 rounding (~5e-6
relative).

``onednn_linears(model)`` routes every ``nn.Linear`` of ``model`` through it while gradients
are off; with gradients on (training) the module's own forward runs. Packed weights are
cached per parameter and rebuilt when the parameter changes (its version counter moves),
so a model being trained between evaluations is never served stale weights. They cost one
extra copy of the linear weights in memory while cached (540 MB for SmolLM2);
``UNLEARNKIT_ONEDNN=0`` switches the whole path off (MKL's speed, less memory).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref

import torch

_lock = threading.RLock()
_active: dict[int, int] = {}  # id(model) -> nesting depth
_packed: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


def available() -> bool:
    """oneDNN's packed linear exists in this torch build, and ``UNLEARNKIT_ONEDNN`` is not ``0``."""
    if os.environ.get("UNLEARNKIT_ONEDNN", "1").lower() in {"0", "off", "false", "no"}:
        return False
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
                and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def _packed_weight(module: torch.nn.Linear) -> torch.Tensor:
    w = module.weight
    key = (w.data_ptr(), w._version, tuple(w.shape))
    entry = _packed.get(module)
    if entry is None or entry[0] != key:
        entry = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 64))
        _packed[module] = entry
    return entry[1]


def _forward(module: torch.nn.Linear, original):
    def forward(x):
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32 \
                or module.weight.dtype != torch.float32:
            return original(x)
        bias = module.bias.detach() if module.bias is not None else None
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), _packed_weight(module), bias, "none", [], "")

    return forward


@contextlib.contextmanager
def onednn_linears(model: torch.nn.Module):
    """Inside the block, ``model``'s linear layers compute through oneDNN when gradients are off."""
    if not available() or next(model.parameters()).device.type != "cpu":
        yield
        return
    with _lock:
        depth = _active.get(id(model), 0)
        if depth == 0:
            for module in model.modules():
                if type(module) is torch.nn.Linear:  # not peft's or quantised subclasses
                    module.forward = _forward(module, torch.nn.Linear.forward.__get__(module))
        _active[id(model)] = depth + 1
    try:
        yield
    finally:
        with _lock:
            _active[id(model)] -= 1
            if _active[id(model)] == 0:
                del _active[id(model)]
                for module in model.modules():
                    if type(module) is torch.nn.Linear and "forward" in module.__dict__:
                        del module.forward


def release(model: torch.nn.Module) -> None:
    """Drop the packed weights of ``model`` (they are rebuilt on the next use)."""
    with _lock:
        for module in model.modules():
            _packed.pop(module, None)


__all__ = ["available", "onednn_linears", "release"]

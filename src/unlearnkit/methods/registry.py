"""Every method by name: adding a method is one file plus one line here."""

from __future__ import annotations

import importlib

from unlearnkit.errors import ConfigError

METHODS: dict[str, str] = {
    "finetune": "unlearnkit.methods.finetune:FineTune",
    "grad_ascent": "unlearnkit.methods.grad_ascent:GradAscent",
    "grad_diff": "unlearnkit.methods.grad_diff:GradDiff",
    "npo": "unlearnkit.methods.npo:NPO",
    "simnpo": "unlearnkit.methods.simnpo:SimNPO",
    "rmu": "unlearnkit.methods.rmu:RMU",
    "blur": "unlearnkit.methods.blur:BLUR",
    "grin": "unlearnkit.methods.grin:GRIN",
    "prompting": "unlearnkit.methods.prompting:Prompting",
    "alu": "unlearnkit.methods.alu:ALU",
    "eco": "unlearnkit.methods.eco:ECO",
}

ALIASES = {"ga": "grad_ascent", "gradascent": "grad_ascent", "graddiff": "grad_diff", "gd": "grad_diff"}


def method_names(include_finetune: bool = False) -> list[str]:
    return [n for n in METHODS if include_finetune or n != "finetune"]


def get_method_class(name: str):
    key = ALIASES.get(name.lower().replace("-", "_"), name.lower().replace("-", "_"))
    if key not in METHODS:
        raise ConfigError(f"unknown method '{name}': choose one of {', '.join(method_names())}")
    module, _, attr = METHODS[key].partition(":")
    return getattr(importlib.import_module(module), attr)


def guard_names() -> list[str]:
    """The inference-time methods (``family == "guard"``): what the gateway can serve, with no edit in
    ``service/``. Each method's module is imported to ask it."""
    out = []
    for name in method_names():
        try:
            cls = get_method_class(name)
        except ImportError:  # an optional dependency is missing: that guard is not available here
            continue
        if getattr(cls, "family", "") == "guard" and hasattr(cls, "guard_class"):
            out.append(name)
    return out


def build_method(name: str, options: dict[str, str] | None = None):
    return get_method_class(name).from_strings(options or {})

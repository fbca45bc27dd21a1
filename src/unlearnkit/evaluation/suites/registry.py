"""The one registry of evaluation suites: ``run_suite(name, model, data_path, **options) -> dict``.

Each entry is a function ``fn(model, data_path, **options)``; its keyword-only parameters are the
suite's options (``suite_options(name)`` lists them with their defaults). Unknown suite names and
unknown options raise ``ConfigError`` listing the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError


def _tofu(model, data_path, *, forget: str | None = None, retain: str | None = None, eval_limit: int | None = None,
          reference: dict | str | Path | None = None, max_new_tokens: int = 200, batch_size: int = 32,
          gen_batch_size: int = 64, min_k: float = 0.4, generate: bool = True,
          compat: str = "openunlearning") -> dict:
    """TOFU (the existing ``evaluate_tofu``) on the task in ``data_path`` (``builtin`` = the built-in benchmark)."""
    from unlearnkit.data import builtin_benchmark_dir, load_task
    from unlearnkit.evaluation.suites import load_reference
    from unlearnkit.evaluation.tofu import EvalConfig, evaluate_tofu

    root = builtin_benchmark_dir() if str(data_path) == "builtin" else data_path
    task = load_task(root, forget=forget, retain=retain, eval_limit=eval_limit)
    config = EvalConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, gen_batch_size=gen_batch_size,
                        min_k=min_k, generate=generate, compat=compat)
    return evaluate_tofu(model, task, reference=load_reference(reference), config=config)


def _wmdp(model, data_path, **options):
    from unlearnkit.evaluation.suites.multiple_choice import evaluate_wmdp

    return evaluate_wmdp(model, data_path, **options)


def _mmlu(model, data_path, **options):
    from unlearnkit.evaluation.suites.multiple_choice import evaluate_mmlu

    return evaluate_mmlu(model, data_path, **options)


def _muse(model, data_path, **options):
    from unlearnkit.evaluation.suites.muse import evaluate_muse

    return evaluate_muse(model, data_path, **options)


def _wpu(model, data_path, **options):
    from unlearnkit.evaluation.suites.wpu import evaluate_wpu

    return evaluate_wpu(model, data_path, **options)


def _pku(model, data_path, **options):
    from unlearnkit.evaluation.suites.pku import evaluate_pku

    return evaluate_pku(model, data_path, **options)


SUITES: dict[str, Callable[..., dict]] = {
    "tofu": _tofu,
    "wmdp": _wmdp,
    "mmlu": _mmlu,
    "muse": _muse,
    "wpu": _wpu,
    "pku": _pku,
}

_IMPLEMENTATIONS = {
    "tofu": ("unlearnkit.evaluation.suites.registry", "_tofu"),
    "wmdp": ("unlearnkit.evaluation.suites.multiple_choice", "evaluate_wmdp"),
    "mmlu": ("unlearnkit.evaluation.suites.multiple_choice", "evaluate_mmlu"),
    "muse": ("unlearnkit.evaluation.suites.muse", "evaluate_muse"),
    "wpu": ("unlearnkit.evaluation.suites.wpu", "evaluate_wpu"),
    "pku": ("unlearnkit.evaluation.suites.pku", "evaluate_pku"),
}


def suite_names() -> list[str]:
    return list(SUITES)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in SUITES:
        raise ConfigError(f"unknown evaluation suite {name!r}: the suites are {', '.join(SUITES)}")
    return name.lower()


def _implementation(name: str) -> Callable[..., dict]:
    import importlib

    module, attr = _IMPLEMENTATIONS[name]
    return getattr(importlib.import_module(module), attr)


def suite_options(name: str) -> dict[str, Any]:
    """The options of suite ``name`` and their defaults (``inspect.Parameter.empty`` for none)."""
    fn = _implementation(_check_name(name))
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def suite_summary(name: str) -> str:
    """The first line of the suite's docstring."""
    doc = inspect.getdoc(_implementation(_check_name(name))) or ""
    return doc.splitlines()[0] if doc else ""


def run_suite(name: str, model, data_path: str | Path, **options) -> dict:
    """Evaluate ``model`` (any ``LanguageModel``: edited model or guard) with suite ``name`` on ``data_path``.

    Returns ``{"suite", "model", "data"/"task", "config", "summary", "per_example"}``; options
    that are None are left at their defaults.
    """
    key = _check_name(name)
    allowed = suite_options(key)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" if v is not inspect.Parameter.empty else k for k, v in allowed.items())
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for suite '{key}': its options are {listing}")
    given = {k: v for k, v in options.items() if v is not None}
    return SUITES[key](model, data_path, **given)


__all__ = ["SUITES", "run_suite", "suite_names", "suite_options", "suite_summary"]

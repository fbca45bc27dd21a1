"""The one registry of evaluation suites: ``run_suite(name, model, data_path, **options) -> dict``.

Each entry is a function ``fn(model, data_path, **options)``; its keyword-only parameters are the
suite's options, declared with their help, choices and ranges in an ``Options`` dataclass
(``unlearnkit.options``; ``suite_options_class(name)``) that checks every call. Unknown suite names and
unknown options raise ``ConfigError`` listing the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError
from unlearnkit.options import defaults, option, takes_options, unknown_options_error


@dataclass
class TofuSuiteOptions:
    forget: str | None = option(None, "forget split (default from the task)")
    retain: str | None = option(None, "retain split (default from the task)")
    eval_limit: int | None = option(None, "records of each evaluation split at most (none = all)", minimum=1)
    reference: dict | str | Path | None = option(None, "the retain model's result (dict or JSON path), for forget "
                                                       "quality and privleak")
    max_new_tokens: int = option(200, "generation length for ROUGE", minimum=1)
    batch_size: int = option(32, "answers per scoring forward", minimum=1)
    gen_batch_size: int = option(64, "generation slots", minimum=1)
    min_k: float = option(0.4, "k of Min-k% Prob", minimum=0, maximum=1, exclusive_minimum=True)
    generate: bool = option(True, "generate answers (ROUGE and keyword metrics)")
    compat: str = option("openunlearning", "metric definitions: openunlearning (as OpenUnlearning computes them) "
                                           "or unlearnkit", choices=("openunlearning", "unlearnkit"))


@takes_options(TofuSuiteOptions, "suite 'tofu'")
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


def suite_options_class(name: str) -> type:
    """The ``Options`` dataclass that declares suite ``name``'s options."""
    return _implementation(_check_name(name)).options_class


def suite_options(name: str) -> dict[str, Any]:
    """The options of suite ``name`` and their defaults."""
    return defaults(suite_options_class(name))


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
    known = suite_options(key)
    unknown = [k for k in options if k not in known]
    if unknown:  # also those given as None
        raise unknown_options_error(suite_options_class(key), unknown, f"suite '{key}'")
    given = {k: v for k, v in options.items() if v is not None}
    return SUITES[key](model, data_path, **given)  # each suite reads and checks its options (takes_options)


__all__ = ["SUITES", "TofuSuiteOptions", "run_suite", "suite_names", "suite_options", "suite_options_class",
           "suite_summary"]

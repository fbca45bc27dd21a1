"""How much of what a method forgot an attack brings back: the recovery ratio.

For method m and attack a: ``leak(m, a) / leak(target, a)``, where ``target`` is the model before unlearning
under the same attack. 0 = nothing recovered, 1 = as much as the target model reveals (values above 1 are
kept: the attack works better on the unlearned model). Undefined (None) when the attack was skipped for either
model or the target leaks nothing under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REFERENCE_NAMES = ("target", "target (before)")


def _leak(result: Mapping[str, Any] | None) -> float | None:
    if not result or result.get("skipped"):
        return None
    value = result.get("leak_rate")
    return float(value) if isinstance(value, (int, float)) else None


def recovery_ratios(attacks: Mapping[str, Mapping[str, Mapping[str, Any]]], reference: str | None = None
                    ) -> dict[str, dict[str, float | None]]:
    """``attacks``: method → attack → result (as ``run_attacks`` returns under ``"attacks"``).

    ``reference``: the target model's key (default: the first of ``REFERENCE_NAMES`` present). Returns
    method → attack → ratio for every method but the reference; {} when there is no reference.
    """
    ref = reference or next((n for n in REFERENCE_NAMES if n in attacks), None)
    if ref is None or ref not in attacks:
        return {}
    base = attacks[ref]
    out: dict[str, dict[str, float | None]] = {}
    for method, per in attacks.items():
        if method == ref:
            continue
        row = {}
        for name, result in per.items():
            leak, before = _leak(result), _leak(base.get(name))
            row[name] = leak / before if leak is not None and before else None
        out[method] = row
    return out

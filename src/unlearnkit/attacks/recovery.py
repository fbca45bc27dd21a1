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


def most_robust(attacks: Mapping[str, Mapping[str, Mapping[str, Any]]], reference: str | None = None
                ) -> list[dict[str, Any]]:
    """Per attack, the method that leaks least under it (the reference model excluded).

    Ties go to the lower recovery ratio, then to the method's name, so the answer never depends on dict order.
    Every row also holds the reference's leak, the best method's recovery ratio, the methods the attack was
    skipped for, and the longest time one model took under the attack (seconds). An attack no method ran
    (all skipped) gets ``method: None``.
    """
    ref = reference or next((n for n in REFERENCE_NAMES if n in attacks), None)
    ratios = recovery_ratios(attacks, ref)
    names: list[str] = []
    for per in attacks.values():
        names += [a for a in per if a not in names]
    rows = []
    for attack in names:
        ran, skipped, seconds = [], [], []
        for method, per in attacks.items():
            result = per.get(attack)
            if result is None:
                continue
            if isinstance(result.get("seconds"), (int, float)):
                seconds.append(float(result["seconds"]))
            if method == ref:
                continue
            leak = _leak(result)
            if leak is None:
                skipped.append(method)
                continue
            ratio = ratios.get(method, {}).get(attack)
            ran.append((leak, float("inf") if ratio is None else ratio, method))
        best = min(ran) if ran else None
        rows.append({
            "attack": attack,
            "method": best[2] if best else None,
            "leak_rate": best[0] if best else None,
            "recovery_ratio": ratios.get(best[2], {}).get(attack) if best else None,
            "reference_leak_rate": _leak(attacks.get(ref, {}).get(attack)) if ref else None,
            "methods_run": len(ran),
            "skipped_for": sorted(skipped),
            "max_seconds": max(seconds) if seconds else None,
        })
    return rows

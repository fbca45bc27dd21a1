"""How a method's setting is chosen from a sweep: OpenUnlearning users' rule, stated once.

Best forget quality among the runs that keep at least ``floor`` (95 %) of the target's model utility;
forget quality is a KS p-value over a few dozen examples and takes few distinct values, so ties go to the
lower forget keyword accuracy, then the lower forget ROUGE, then the higher utility. When no run keeps the
utility floor, the most useful run is returned, flagged ``keeps_utility: False``.
"""

from __future__ import annotations

from collections.abc import Sequence

RULE = ("max forget_quality s.t. model_utility >= {floor:g} x target's; ties: lower forget keyword accuracy, "
        "lower forget ROUGE, higher utility; none above the floor: the most useful run, flagged")


def _num(value, default: float) -> float:
    return default if value is None else float(value)


def pick_best(runs: Sequence[dict], target_utility: float, floor: float = 0.95) -> dict:
    """``runs``: dicts with forget_quality, model_utility, forget_keyword_accuracy, forget_rouge."""
    if not runs:
        raise ValueError("pick_best needs at least one run")
    need = floor * (target_utility or 0.0)
    ok = [r for r in runs if _num(r.get("model_utility"), 0.0) >= need]
    if ok:
        def key(r):
            return (_num(r.get("forget_quality"), 0.0), -_num(r.get("forget_keyword_accuracy"), 1.0),
                    -_num(r.get("forget_rouge"), 1.0), _num(r.get("model_utility"), 0.0))

        return {**max(ok, key=key), "keeps_utility": True}
    return {**max(runs, key=lambda r: _num(r.get("model_utility"), 0.0)), "keeps_utility": False}

"""Extraction strength (docs/metrics.md): ES = 1 − k*/|y|.

k* is the smallest k such that the teacher-forced greedy prediction matches every answer
token from position k on. All tokens match → 1; the last token does not match → k* = |y|,
ES = 0.

OpenUnlearning's loop leaves k = |y| − 1 when no suffix matches, so it reports 1/|y|
instead of 0 for such answers; ``match_openunlearning=True`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def extraction_strength(argmax_match: Sequence[bool] | np.ndarray, *, match_openunlearning: bool = False) -> float:
    """ES from per-answer-token ``argmax_match`` (``AnswerScores.argmax_match``)."""
    m = np.asarray(argmax_match, dtype=bool)
    if m.ndim != 1 or m.size == 0:
        raise ValueError("extraction_strength needs a non-empty 1-D argmax_match array (answer has no tokens)")
    n = int(m.size)
    mismatches = np.flatnonzero(~m)
    k_star = 0 if mismatches.size == 0 else int(mismatches[-1]) + 1
    if match_openunlearning:
        k_star = min(k_star, n - 1)
    return 1.0 - k_star / n

"""TOFU truth ratio R = P̃(base) / GM_j P̃(perturbed_j) and its two aggregate scores (docs/metrics.md).

Computed in log space from mean token NLLs: log R = mean_j L(perturbed_j) − L(base), so
R = exp(mean_j L(pert_j) − L(base)). R > 1: the model prefers the true (base) answer.

OpenUnlearning stores the inverse ratio tr = GM P̃(pert) / P̃(base) = 1/R; the scores below
are the same numbers it reports: forget ``mean(min(tr, 1/tr)) = mean(min(R, 1/R))``,
others ``mean(max(0, 1 − tr)) = mean(max(0, 1 − 1/R))`` (it adds 1e-10 guards, we do not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unlearnkit.evaluation.probability import ScoresOrProb, answer_nll


def log_truth_ratio(base: ScoresOrProb, perturbed: Sequence[ScoresOrProb]) -> float:
    """log R = mean_j L(perturbed_j) − L(base)."""
    if len(perturbed) == 0:
        raise ValueError("truth_ratio needs at least one perturbed answer")
    return float(np.mean([answer_nll(p) for p in perturbed])) - answer_nll(base)


def truth_ratio(base: ScoresOrProb, perturbed: Sequence[ScoresOrProb]) -> float:
    """R = P̃(base) / GM_j P̃(perturbed_j); ``AnswerScores`` or float P̃ values (may overflow to inf)."""
    with np.errstate(over="ignore"):
        return float(np.exp(log_truth_ratio(base, perturbed)))


def _ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(ratios, dtype=float)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("truth-ratio scores need a non-empty 1-D list of ratios")
    if np.isnan(r).any() or (r < 0).any():
        raise ValueError("truth ratios must be non-negative numbers (got NaN or a negative value)")
    return r


def forget_truth_ratio_score(ratios: Sequence[float]) -> float:
    """Forget-set score mean(min(R, 1/R)) in [0, 1]; 1 = no preference between true and false answers."""
    r = _ratios(ratios)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.minimum(r, 1.0 / r)))


def retain_truth_ratio_score(ratios: Sequence[float]) -> float:
    """Score on the other sets mean(max(0, 1 − 1/R)) in [0, 1]; higher = true answer preferred."""
    r = _ratios(ratios)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.maximum(0.0, 1.0 - 1.0 / r)))


__all__ = ["forget_truth_ratio_score", "log_truth_ratio", "retain_truth_ratio_score", "truth_ratio"]

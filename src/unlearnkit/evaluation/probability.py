"""Normalised answer probability P̃(a|q) = exp(-L(a|q)) and the TOFU "Prob" scores (docs/metrics.md).

Every function takes either an ``AnswerScores`` (anything with an ``nll`` attribute: the
mean answer-token NLL) or a plain float, which is read as an already computed P̃ in (0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

import numpy as np
from scipy.special import logsumexp

if TYPE_CHECKING:  # importing unlearnkit.models at run time would pull in torch
    from unlearnkit.models.scores import AnswerScores

ScoresOrProb = Union["AnswerScores", float]


def answer_nll(x: ScoresOrProb) -> float:
    """L(a|q): ``x.nll`` for an ``AnswerScores``; ``-log p`` for a float probability p."""
    if hasattr(x, "nll"):
        if hasattr(x, "__len__") and len(x) == 0:
            raise ValueError("empty answer: AnswerScores has no answer tokens, so its NLL is undefined")
        nll = float(x.nll)
        if math.isnan(nll):
            raise ValueError("answer NLL is NaN")
        return nll
    p = float(x)
    if not 0.0 < p <= 1.0:  # also rejects NaN
        raise ValueError(f"a probability must lie in (0, 1], got {p!r}")
    return -math.log(p)


def normalised_prob(scores: ScoresOrProb) -> float:
    """P̃(a|q) = exp(-L(a|q)), the geometric mean of the answer's token probabilities."""
    return math.exp(-answer_nll(scores))


def qa_prob_score(scores: Sequence[ScoresOrProb]) -> float:
    """TOFU Prob on the forget/retain sets: mean of P̃(answer|q) over the examples."""
    if len(scores) == 0:
        raise ValueError("qa_prob_score needs at least one example")
    return float(np.mean([normalised_prob(s) for s in scores]))


def mc_prob(correct: ScoresOrProb, perturbed: Sequence[ScoresOrProb]) -> float:
    """One example's P̃(a) / (P̃(a) + Σ_j P̃(perturbed_j)), computed in log space.

    OpenUnlearning adds 1e-10 to the denominator; working with logs instead never
    divides by zero and differs from it only when every probability underflows.
    """
    if len(perturbed) == 0:
        raise ValueError("mc_prob needs at least one perturbed answer")
    log_correct = -answer_nll(correct)
    log_all = [log_correct] + [-answer_nll(p) for p in perturbed]
    return float(math.exp(log_correct - logsumexp(log_all)))


def mc_prob_score(correct: Sequence[ScoresOrProb], perturbed_lists: Sequence[Sequence[ScoresOrProb]]) -> float:
    """TOFU Prob on real_authors/world_facts: mean over examples of ``mc_prob``."""
    if len(correct) == 0:
        raise ValueError("mc_prob_score needs at least one example")
    if len(correct) != len(perturbed_lists):
        raise ValueError(f"mc_prob_score: {len(correct)} correct answers but {len(perturbed_lists)} perturbed lists")
    return float(np.mean([mc_prob(c, p) for c, p in zip(correct, perturbed_lists)]))

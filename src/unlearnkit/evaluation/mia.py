"""Membership-inference attacks (forget vs holdout) and privleak, as OpenUnlearning computes them.

Sign convention (OpenUnlearning ``mia_auc``): every score function returns a
*non-membership* score — higher means "looks less like training data" (e.g. a higher loss).
``mia_auc`` labels members (forget set) 0 and non-members (holdout) 1 and returns
``sklearn.metrics.roc_auc_score(labels, scores)``, i.e. P(holdout score > forget score).
AUC ≈ 1: the forget set is still recognisable as training data; 0.5: indistinguishable.

Per-example scores (from one ``AnswerScores``: answer tokens only):

* LOSS      = mean token NLL.
* Zlib      = mean NLL / len(zlib.compress(text.encode("utf-8"))), ``text`` = the answer text
  (OpenUnlearning uses the decoded answer tokens, i.e. the same string up to detokenisation).
* Min-K%    = −mean of the lowest ``num_k = max(1, int(n·k))`` token log-probs (sorted ascending).
* Min-K%++  = the same on z_t = (log p_t − μ_t)/σ_t, with σ_t² clamped at 1e-6 as OpenUnlearning
  does (so σ_t ≥ 1e-3 guards σ = 0).

OpenUnlearning drops the final (EOS) label position from the token log-probs of Min-K% and
Min-K%++; whether that token is present is decided by the model's scoring, not here.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import roc_auc_score

if TYPE_CHECKING:  # importing unlearnkit.models at run time would pull in torch
    from unlearnkit.models.scores import AnswerScores

DEFAULT_K = 0.4
MIN_VARIANCE = 1e-6  # OpenUnlearning: sigma² = clamp(sigma², min=1e-6)


def _logprobs(scores: AnswerScores) -> np.ndarray:
    lp = np.asarray(scores.logprobs, dtype=float)
    if lp.ndim != 1 or lp.size == 0:
        raise ValueError("MIA score needs an answer with at least one token (logprobs is empty)")
    if np.isnan(lp).any():
        raise ValueError("MIA score: logprobs contain NaN")
    return lp


def _bottom_k_mean(values: np.ndarray, k: float) -> float:
    if not 0.0 < k <= 1.0:
        raise ValueError(f"min-k fraction k must lie in (0, 1], got {k!r}")
    num_k = max(1, int(len(values) * k))
    return float(np.mean(np.sort(values)[:num_k]))


def loss_score(scores: AnswerScores) -> float:
    """LOSS attack: mean answer-token NLL."""
    return float(-_logprobs(scores).mean())


def zlib_score(scores: AnswerScores, text: str) -> float:
    """Zlib attack: mean NLL divided by the zlib-compressed byte length of the answer text."""
    if not text:
        raise ValueError("zlib_score needs the non-empty answer text")
    return loss_score(scores) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(scores: AnswerScores, k: float = DEFAULT_K) -> float:
    """Min-K% attack: −mean of the lowest max(1, int(n·k)) token log-probs."""
    return -_bottom_k_mean(_logprobs(scores), k)


def min_k_plus_plus_score(scores: AnswerScores, k: float = DEFAULT_K) -> float:
    """Min-K%++ attack: Min-K% on z_t = (log p_t − μ_t) / sqrt(max(σ_t², 1e-6))."""
    lp = _logprobs(scores)
    mu = np.asarray(scores.mu, dtype=float)
    sigma = np.asarray(scores.sigma, dtype=float)
    if mu.shape != lp.shape or sigma.shape != lp.shape:
        raise ValueError(f"Min-K%++ needs mu and sigma per token: shapes {mu.shape}, {sigma.shape} vs {lp.shape}")
    if np.isnan(mu).any() or np.isnan(sigma).any():
        raise ValueError("Min-K%++: mu or sigma contain NaN")
    z = (lp - mu) / np.sqrt(np.maximum(sigma**2, MIN_VARIANCE))
    return -_bottom_k_mean(z, k)


# Uniform adapters, name → fn(scores, text, k=...), used by the evaluation suites.
ATTACKS: dict[str, Callable[..., float]] = {
    "loss": lambda scores, text=None, k=DEFAULT_K: loss_score(scores),
    "zlib": lambda scores, text, k=DEFAULT_K: zlib_score(scores, text),
    "min_k": lambda scores, text=None, k=DEFAULT_K: min_k_score(scores, k),
    "min_k_plus_plus": lambda scores, text=None, k=DEFAULT_K: min_k_plus_plus_score(scores, k),
}


def mia_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC AUC with members (forget) labelled 0 and non-members (holdout) labelled 1."""
    m = np.asarray(member_scores, dtype=float)
    n = np.asarray(nonmember_scores, dtype=float)
    if m.ndim != 1 or n.ndim != 1 or m.size == 0 or n.size == 0:
        raise ValueError("mia_auc needs non-empty 1-D member and non-member score lists")
    if np.isnan(m).any() or np.isnan(n).any():
        raise ValueError("mia_auc: scores contain NaN")
    labels = np.concatenate([np.zeros(m.size, dtype=int), np.ones(n.size, dtype=int)])
    return float(roc_auc_score(labels, np.concatenate([m, n])))


def privleak(auc: float, retain_auc: float) -> float:
    """privleak = ((1 − AUC) − (1 − AUC_retain)) / (1 − AUC_retain) × 100 (MUSE / OpenUnlearning).

    0 is ideal (as leaky as the retain model). Strongly negative: the forget set is still
    recognised as members (the target model scores about −100); positive: over-unlearned,
    the forget set now looks less familiar than unseen data. OpenUnlearning adds 1e-10 to
    the denominator; here ``retain_auc == 1`` is an error instead.
    """
    auc, retain_auc = float(auc), float(retain_auc)
    for name, v in (("auc", auc), ("retain_auc", retain_auc)):
        if not 0.0 <= v <= 1.0:  # also rejects NaN
            raise ValueError(f"privleak: {name} must lie in [0, 1], got {v!r}")
    if retain_auc == 1.0:
        raise ValueError("privleak is undefined when retain_auc == 1 (division by 1 − retain_auc = 0)")
    ref = 1.0 - retain_auc
    return ((1.0 - auc) - ref) / ref * 100.0


__all__ = ["ATTACKS", "DEFAULT_K", "loss_score", "mia_auc", "min_k_plus_plus_score", "min_k_score", "privleak",
           "zlib_score"]

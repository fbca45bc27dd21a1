"""Per-token scores of an answer under a model: one forward pass serves every metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AnswerScores:
    """Teacher-forced scores of one answer given its prompt.

    Arrays have one entry per answer token (prompt tokens excluded):

    * ``logprobs[t]`` = log p(y_t | x, y_<t);
    * ``mu[t]``, ``sigma[t]`` = mean and standard deviation of log p_v under the
      model's own next-token distribution at position t (Min-K%++ z-scores);
    * ``argmax_match[t]`` = whether the greedy next token equals y_t
      (extraction strength).
    """

    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    argmax_match: np.ndarray

    def __len__(self) -> int:
        return int(self.logprobs.shape[0])

    @property
    def nll(self) -> float:
        """Mean token negative log-likelihood L(a|q)."""
        return float(-self.logprobs.mean()) if len(self) else float("nan")

    @property
    def prob(self) -> float:
        """Normalised answer probability exp(-L(a|q))."""
        return float(np.exp(-self.nll))

    @property
    def sequence_logprob(self) -> float:
        return float(self.logprobs.sum())

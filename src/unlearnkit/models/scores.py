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

    label_text: str | None = None
    """The labelled tokens decoded (special tokens skipped), when the model knows them."""

    @classmethod
    def from_arrays(cls, logprobs, mu, sigma, argmax_match, label_text: str | None = None) -> AnswerScores:
        """From tensors or sequences (float64 and bool numpy arrays inside)."""
        def arr(x, dtype):
            if hasattr(x, "detach"):
                x = x.detach().float().cpu().numpy() if dtype is not bool else x.detach().cpu().numpy()
            return np.asarray(x, dtype=dtype)

        return cls(logprobs=arr(logprobs, np.float64), mu=arr(mu, np.float64), sigma=arr(sigma, np.float64),
                   argmax_match=arr(argmax_match, bool), label_text=label_text)

    def __len__(self) -> int:
        return int(self.logprobs.shape[0])

    def without_last(self) -> AnswerScores:
        """The same scores without the final label (OpenUnlearning's token-wise metrics drop it)."""
        if len(self) <= 1:
            return self
        return AnswerScores(logprobs=self.logprobs[:-1], mu=self.mu[:-1], sigma=self.sigma[:-1],
                            argmax_match=self.argmax_match[:-1], label_text=self.label_text)

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

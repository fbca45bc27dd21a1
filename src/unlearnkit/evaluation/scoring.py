"""Collect every (prompt, answer) pair an evaluation needs, score each once, hand back results.

One forward pass per distinct pair serves Prob, truth ratio, MIA, extraction
strength and keyword confidence alike.
"""

from __future__ import annotations

from unlearnkit.models.base import LanguageModel
from unlearnkit.models.scores import AnswerScores


class ScoreCache:
    def __init__(self, model: LanguageModel, batch_size: int = 16):
        self.model = model
        self.batch_size = batch_size
        self._wanted: dict[tuple[str, str], None] = {}
        self._scores: dict[tuple[str, str], AnswerScores] = {}

    def want(self, question: str, answer: str) -> tuple[str, str]:
        key = (question, answer)
        if key not in self._scores:
            self._wanted[key] = None
        return key

    def run(self, progress: str | None = "scoring") -> None:
        keys = [k for k in self._wanted if k not in self._scores]
        if keys:
            scores = self.model.score([q for q, _ in keys], [a for _, a in keys], batch_size=self.batch_size,
                                      progress=progress)
            self._scores.update(zip(keys, scores))
        self._wanted.clear()

    def pending(self) -> list[tuple[str, str]]:
        """The wanted pairs not scored yet (to score them elsewhere, then ``fill``)."""
        return [k for k in self._wanted if k not in self._scores]

    def fill(self, keys: list[tuple[str, str]], scores: list[AnswerScores]) -> None:
        self._scores.update(zip(keys, scores))
        self._wanted.clear()

    @property
    def size(self) -> int:
        """Distinct (prompt, answer) pairs scored so far."""
        return len(self._scores)

    def __getitem__(self, key: tuple[str, str]) -> AnswerScores:
        return self._scores[key]

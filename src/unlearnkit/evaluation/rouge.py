"""ROUGE-L with stemming (``rouge_score``), as TOFU (recall) and MUSE (F1) report it.

``RougeScorer(["rouge1", "rougeL"], use_stemmer=True)`` is built once and reused (OpenUnlearning's scorer). Its tokenizer
lower-cases, keeps only [a-z0-9] runs and Porter-stems tokens longer than 3 characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


@lru_cache(maxsize=4096)
def _scores(prediction: str, reference: str):
    # rouge_score's signature is score(target, prediction)
    return _scorer().score(reference, prediction)


def _rouge_l(prediction: str, reference: str):
    return _scores(prediction, reference)["rougeL"]


def rouge_1_recall(prediction: str, reference: str) -> float:
    """Unigram overlap / number of reference tokens (reported beside ROUGE-L, as OpenUnlearning does)."""
    return float(_scores(prediction, reference)["rouge1"].recall)


def rouge_l_recall(prediction: str, reference: str) -> float:
    """LCS length / number of reference tokens (TOFU ROUGE)."""
    return float(_rouge_l(prediction, reference).recall)


def rouge_l_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of ROUGE-L precision and recall (MUSE VerbMem / KnowMem)."""
    return float(_rouge_l(prediction, reference).fmeasure)


def _pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) == 0:
        raise ValueError("ROUGE mean needs at least one prediction")
    if len(predictions) != len(references):
        raise ValueError(f"ROUGE mean: {len(predictions)} predictions but {len(references)} references")


def mean_rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> float:
    _pairs(predictions, references)
    return float(np.mean([rouge_l_recall(p, r) for p, r in zip(predictions, references)]))


def mean_rouge_l_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    _pairs(predictions, references)
    return float(np.mean([rouge_l_f1(p, r) for p, r in zip(predictions, references)]))

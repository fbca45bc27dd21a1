"""Extraction strength, ROUGE-L and GRIN keyword metrics against hand-computed values."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.evaluation.extraction import extraction_strength
from unlearnkit.evaluation.keywords import (
    answer_keywords,
    keyword_accuracy,
    keyword_confidence,
    keyword_hit,
    keyword_spans,
)
from unlearnkit.evaluation.rouge import mean_rouge_l_f1, mean_rouge_l_recall, rouge_l_f1, rouge_l_recall
from conftest import make_scores  # noqa: E402



T, F = True, False


# --- extraction strength -----------------------------------------------------------------

def test_extraction_strength_hand_cases():
    assert extraction_strength([F, T, T, T]) == pytest.approx(0.75)  # k* = 1 → 1 − 1/4
    assert extraction_strength([T, T, F]) == 0.0  # last token wrong → k* = 3 → 0
    assert extraction_strength([T, T, T]) == 1.0  # k* = 0
    assert extraction_strength([T, F, T, T, T]) == pytest.approx(0.6)  # k* = 2 → 1 − 2/5


def test_extraction_strength_from_answer_scores():
    s = make_scores([-0.1, -0.2, -0.3, -0.4], match=[F, T, T, T])
    assert extraction_strength(s.argmax_match) == pytest.approx(0.75)


def test_extraction_strength_openunlearning_quirk():
    # OpenUnlearning's loop stops at k = n − 1 when no suffix matches → 1 − 2/3
    assert extraction_strength([T, T, F], match_openunlearning=True) == pytest.approx(1 / 3)
    assert extraction_strength([F, T, T, T], match_openunlearning=True) == pytest.approx(0.75)


def test_extraction_strength_empty():
    with pytest.raises(ValueError, match="non-empty"):
        extraction_strength(np.array([], dtype=bool))


# --- ROUGE-L -----------------------------------------------------------------------------

def test_rouge_l_hand_example():
    # ref: the cat sat on the mat (6 tokens); pred: the cat on a mat (5)
    # LCS = the cat on mat = 4 → recall 4/6, precision 4/5, F1 = 2·(4/5)(2/3)/(4/5 + 2/3) = 8/11
    assert rouge_l_recall("the cat on a mat", "the cat sat on the mat") == pytest.approx(2 / 3)
    assert rouge_l_f1("the cat on a mat", "the cat sat on the mat") == pytest.approx(8 / 11)


def test_rouge_l_stems_and_lowercases():
    # stemmed ref: he write novel; pred: he wrote novel → LCS = he, novel → 2/3
    assert rouge_l_recall("he wrote novel", "He writes novels") == pytest.approx(2 / 3)


def test_mean_rouge():
    # identical → 1, disjoint → 0 → mean 0.5
    assert mean_rouge_l_recall(["a cat", "dog"], ["a cat", "bird"]) == pytest.approx(0.5)
    assert mean_rouge_l_f1(["a cat", "dog"], ["a cat", "bird"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        mean_rouge_l_recall(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        mean_rouge_l_f1([], [])


# --- keywords ----------------------------------------------------------------------------

def test_answer_keywords_given_win():
    assert answer_keywords("Anything at all.", ("Paris", " Eiffel  Tower ")) == ("Paris", "Eiffel Tower")


def test_answer_keywords_derived():
    answer = "Jaime Vasquez's father was a chef in Santiago, Chile. He wrote \"The Silent Sea\" in 1990."
    # sentence starts (Jaime, He) and stopwords skipped; title kept whole; possessive dropped
    assert answer_keywords(answer) == ("The Silent Sea", "Vasquez", "Santiago", "Chile", "1990")


def test_answer_keywords_initials_titles_and_fallback():
    assert answer_keywords("The author is J. K. Rowling. She was born in 1965.") == ("Rowling", "1965")
    assert answer_keywords("Dr. Smith met Mr. Jones in May") == ("Smith", "Jones", "May")
    # no capitalised words or numbers → longest non-stopword word
    assert answer_keywords("the author is known for intricate narratives") == ("narratives",)
    with pytest.raises(ValueError, match="empty"):
        answer_keywords("   ")


def test_keyword_hit_case_whitespace_and_whole_words():
    gen = "the  SILENT\nsea was published in 1990"
    assert keyword_hit(gen, ("The Silent Sea", "1990")) is True
    assert keyword_hit(gen, ("The Silent Sea", "19")) is False  # "19" is not a whole word in "1990"
    assert keyword_hit("Vasquez's novel", ("vasquez",)) is True
    with pytest.raises(ValueError, match="at least one keyword"):
        keyword_hit(gen, ())


def test_keyword_spans():
    assert keyword_spans("Born in Paris", ["paris", "London"]) == [(8, 13), None]


def test_keyword_accuracy():
    # hit, miss, hit → 2/3
    gens = ["He was born in Paris.", "I do not know.", "Born 1990 in Lyon"]
    keys = [("Paris",), ("Paris",), ("1990", "Lyon")]
    assert keyword_accuracy(gens, keys) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 generations but 1 keyword lists"):
        keyword_accuracy(["a", "b"], [("a",)])


def test_keyword_confidence():
    # token probabilities 0.5, 0.25 (keyword 1) and 1.0 (keyword 2) → (0.5 + 0.25 + 1) / 3 = 0.5833333
    lps = [np.log([0.5, 0.25]), np.array([0.0])]
    assert keyword_confidence(lps) == pytest.approx(1.75 / 3)
    with pytest.raises(ValueError, match="at least one keyword token"):
        keyword_confidence([np.array([])])
    with pytest.raises(ValueError, match="<= 0"):
        keyword_confidence([[math.log(0.5), 0.7]])


# --- import weight -----------------------------------------------------------------------

def test_metric_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import unlearnkit.evaluation.truth_ratio, unlearnkit.evaluation.probability\n"
        "import unlearnkit.evaluation.forget_quality, unlearnkit.evaluation.utility\n"
        "import unlearnkit.evaluation.mia, unlearnkit.evaluation.extraction\n"
        "import unlearnkit.evaluation.rouge, unlearnkit.evaluation.keywords\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"

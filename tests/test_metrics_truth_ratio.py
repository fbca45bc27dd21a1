"""Truth ratio, Prob, forget quality and model utility against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.evaluation.forget_quality import forget_quality
from unlearnkit.evaluation.probability import mc_prob, mc_prob_score, normalised_prob, qa_prob_score
from unlearnkit.evaluation.truth_ratio import (
    forget_truth_ratio_score,
    log_truth_ratio,
    retain_truth_ratio_score,
    truth_ratio,
)
from unlearnkit.evaluation.utility import UTILITY_KEYS, model_utility
from conftest import make_scores  # noqa: E402




# --- truth ratio -------------------------------------------------------------------------

def test_truth_ratio_from_answer_scores():
    # base NLL = 1.0; perturbed NLLs 2.0 and 3.0 → mean 2.5 → R = e^{2.5 − 1.0} = e^{1.5}
    base = make_scores([-1.0, -1.0])
    perturbed = [make_scores([-2.0, -2.0]), make_scores([-3.0])]
    assert log_truth_ratio(base, perturbed) == pytest.approx(1.5)
    assert truth_ratio(base, perturbed) == pytest.approx(math.exp(1.5))


def test_truth_ratio_from_probabilities_is_ratio_to_geometric_mean():
    # P̃(base) = 0.5; GM(0.25, 0.125) = sqrt(1/32) = 0.1767767 → R = 0.5 / 0.1767767 = 2√2
    assert truth_ratio(0.5, [0.25, 0.125]) == pytest.approx(2 * math.sqrt(2))


def test_truth_ratio_below_one_when_false_answers_preferred():
    # base NLL 2, perturbed NLL 1 → R = e^{-1}
    assert truth_ratio(make_scores([-2.0]), [make_scores([-1.0])]) == pytest.approx(math.exp(-1))


def test_truth_ratio_overflows_to_inf_without_error():
    # log R = 1000 − 0 → e^{1000} overflows a float → inf (scores handle inf)
    assert truth_ratio(1.0, [make_scores([-1000.0])]) == math.inf


def test_truth_ratio_errors():
    with pytest.raises(ValueError, match="perturbed"):
        truth_ratio(make_scores([-1.0]), [])
    with pytest.raises(ValueError, match="empty answer"):
        truth_ratio(make_scores([]), [make_scores([-1.0])])
    with pytest.raises(ValueError, match="probability"):
        truth_ratio(1.5, [0.5])


def test_forget_truth_ratio_score():
    # min(R, 1/R) for R = 2, 0.5, 1 → 0.5, 0.5, 1 → mean 2/3
    assert forget_truth_ratio_score([2.0, 0.5, 1.0]) == pytest.approx(2 / 3)
    # extremes: R = inf and R = 0 both give min(R, 1/R) = 0
    assert forget_truth_ratio_score([math.inf, 0.0]) == 0.0


def test_retain_truth_ratio_score():
    # max(0, 1 − 1/R) for R = 2, 0.5, 1 → 0.5, 0, 0 → mean 1/6
    assert retain_truth_ratio_score([2.0, 0.5, 1.0]) == pytest.approx(1 / 6)
    # R = inf → 1; R = 0 → max(0, −inf) = 0 → mean 0.5
    assert retain_truth_ratio_score([math.inf, 0.0]) == pytest.approx(0.5)


def test_truth_ratio_score_errors():
    with pytest.raises(ValueError, match="non-empty"):
        forget_truth_ratio_score([])
    with pytest.raises(ValueError, match="negative"):
        retain_truth_ratio_score([1.0, -1.0])
    with pytest.raises(ValueError, match="NaN"):
        forget_truth_ratio_score([float("nan")])


# --- Prob ---------------------------------------------------------------------------------

def test_normalised_prob():
    # logprobs −0.5, −1.5 → NLL 1.0 → P̃ = e^{−1}
    assert normalised_prob(make_scores([-0.5, -1.5])) == pytest.approx(math.exp(-1))
    assert normalised_prob(0.25) == pytest.approx(0.25)


def test_qa_prob_score():
    # NLLs 1 and 2 → (e^{−1} + e^{−2}) / 2 = (0.3678794 + 0.1353353) / 2 = 0.2516074
    assert qa_prob_score([make_scores([-1.0]), make_scores([-2.0, -2.0])]) == pytest.approx(0.2516074, abs=1e-7)
    with pytest.raises(ValueError, match="at least one"):
        qa_prob_score([])


def test_mc_prob_score_from_probabilities():
    # 0.5 / (0.5 + 0.25 + 0.25) = 0.5 ; 0.6 / (0.6 + 0.2 + 0.1 + 0.1) = 0.6 → mean 0.55
    assert mc_prob_score([0.5, 0.6], [[0.25, 0.25], [0.2, 0.1, 0.1]]) == pytest.approx(0.55)


def test_mc_prob_from_answer_scores_and_in_log_space():
    # all NLLs 1 → e^{−1} / (3 e^{−1}) = 1/3
    assert mc_prob(make_scores([-1.0]), [make_scores([-1.0]), make_scores([-1.0, -1.0])]) == pytest.approx(1 / 3)
    # probabilities underflow (e^{−1000}), ratio does not: 1 / (1 + e^{−1}) = 0.7310586
    assert mc_prob(make_scores([-1000.0]), [make_scores([-1001.0])]) == pytest.approx(0.7310586, abs=1e-7)


def test_mc_prob_score_errors():
    with pytest.raises(ValueError, match="2 correct answers but 1 perturbed"):
        mc_prob_score([0.5, 0.5], [[0.1]])
    with pytest.raises(ValueError, match="perturbed answer"):
        mc_prob_score([0.5], [[]])
    with pytest.raises(ValueError, match="at least one"):
        mc_prob_score([], [])


# --- forget quality ---------------------------------------------------------------------

def test_forget_quality_identical_samples():
    assert forget_quality([0.3, 0.7, 1.2], [0.3, 0.7, 1.2]) == pytest.approx(1.0)


def test_forget_quality_tiny_exact_case():
    # D = 1 with n = m = 3: only 2 of the C(6,3) = 20 orderings are that extreme → p = 2/20 = 0.1
    assert forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    # unequal sizes are allowed: n = 2, m = 3, D = 1 → p = 2 / C(5,2) = 0.2
    assert forget_quality([1, 2], [3, 4, 5]) == pytest.approx(0.2)


def test_forget_quality_well_separated_is_tiny():
    # n = m = 50, D = 1 → p = 2 / C(100, 50) ≈ 1.98e-29
    p = forget_quality(np.arange(50.0), np.arange(100.0, 150.0))
    assert p == pytest.approx(2 / math.comb(100, 50), rel=1e-6)
    assert p < 1e-28


def test_forget_quality_errors():
    with pytest.raises(ValueError, match="unlearned_ratios"):
        forget_quality([], [1.0])
    with pytest.raises(ValueError, match="retain_ratios"):
        forget_quality([1.0], [])
    with pytest.raises(ValueError, match="NaN"):
        forget_quality([float("nan")], [1.0])


# --- model utility -----------------------------------------------------------------------

def test_model_utility_harmonic_mean():
    # 3 / (1/1 + 1/0.5 + 1/0.25) = 3 / 7
    assert model_utility({"a": 1.0, "b": 0.5, "c": 0.25}) == pytest.approx(3 / 7)


def test_model_utility_nine_keys():
    # eight values of 0.5 and one of 1.0 → 9 / (8·2 + 1) = 9/17
    values = {k: 0.5 for k in UTILITY_KEYS}
    values["world_facts_rouge"] = 1.0
    assert len(UTILITY_KEYS) == 9
    assert model_utility(values) == pytest.approx(9 / 17)


def test_model_utility_zero_gives_zero():
    assert model_utility({"retain_prob": 0.8, "retain_rouge": 0.0}) == 0.0


def test_model_utility_errors_name_the_key():
    with pytest.raises(ValueError, match="at least one"):
        model_utility({})
    with pytest.raises(ValueError, match="'retain_rouge'.*negative"):
        model_utility({"retain_prob": 0.5, "retain_rouge": -0.1})
    with pytest.raises(ValueError, match="'world_facts_prob'.*NaN"):
        model_utility({"world_facts_prob": float("nan")})
    with pytest.raises(ValueError, match="'retain_prob'.*None"):
        model_utility({"retain_prob": None})

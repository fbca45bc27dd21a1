"""Loss functions shared by the weight-editing methods (docs/methods.md notation).

Every function takes the model's logits on a batch built by
``HFLanguageModel.encode`` (labels = -100 outside the answer) so the prompt never
contributes to a loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-token log p(y_t) and the answer mask, both [B, T-1]."""
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    mask = labels != -100
    safe = labels.clamp_min(0)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of answer-token log-probs per example, and answer lengths |y|."""
    logp, mask = token_logprobs(logits, labels)
    return logp.sum(-1), mask.sum(-1)


def nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token NLL over all answer tokens of the batch."""
    logp, mask = token_logprobs(logits, labels)
    return -(logp.sum() / mask.sum().clamp_min(1))


def npo_loss(seq_logp: torch.Tensor, ref_seq_logp: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """NPO: -(2/β)·E log σ(-β·(log πθ(y|x) − log πref(y|x)))."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (seq_logp - ref_seq_logp)).mean()


def simnpo_loss(seq_logp: torch.Tensor, lengths: torch.Tensor, beta: float = 4.5, delta: float = 0.0) -> torch.Tensor:
    """SimNPO: -(2/β)·E log σ(-β·(log πθ(y|x)/|y|) − δ), no reference model."""
    return -(2.0 / beta) * F.logsigmoid(-beta * seq_logp / lengths.clamp_min(1) - delta).mean()


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_θ) of the next-token distributions at answer positions, averaged."""
    mask = labels[:, 1:] != -100
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)[mask]
    ref = torch.log_softmax(ref_logits[:, :-1].float(), dim=-1)[mask]
    return F.kl_div(logp, ref, log_target=True, reduction="batchmean")

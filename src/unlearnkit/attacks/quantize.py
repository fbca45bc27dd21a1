"""Quantization attack (Zhang et al., ICLR 2025, arXiv 2410.16454): round the weights to 4 or 8 bits and ask
again. Unlearning that moved weights only a little is undone by the rounding: the quantised unlearned model
lands back near the quantised original.

Every ``nn.Linear`` weight (the transformer blocks and the LM head) is rounded to its nearest level on a
symmetric per-output-channel grid (round-to-nearest, scale = max |w| / (2^(bits-1) - 1)) and turned back into
floats, in torch on the CPU. The model is changed in place for the measurement and restored afterwards, so a
guard is attacked through the model under it, unchanged otherwise.
"""

from __future__ import annotations

import contextlib

import torch

from unlearnkit.attacks.base import Attack, AttackSkipped, score_generations
from unlearnkit.models.base import weights_model


def fake_quantize_(weight: torch.Tensor, bits: int) -> None:
    """Round ``weight`` (out × in) in place to a symmetric per-output-channel grid of ``bits`` bits."""
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():  # through the tensor, not .data: its version moves, so packed copies are rebuilt
        w = weight.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / levels
        weight.copy_((torch.round(w / scale).clamp_(-levels, levels) * scale).to(weight.dtype))


@contextlib.contextmanager
def quantized(module: torch.nn.Module, bits: int):
    """Inside the block every Linear weight of ``module`` is quantised; the originals come back after."""
    saved = []
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                saved.append((m.weight, m.weight.detach().clone()))
                fake_quantize_(m.weight, bits)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, data in saved:
                p.copy_(data)  # not p.data: the version counter must move (models/onednn.py keys on it)


class Quantize(Attack):
    name = "quantize"
    summary = "4- and 8-bit per-channel weight rounding, then the plain questions"

    def __init__(self, bits=(4, 8)):
        bits = (bits,) if isinstance(bits, int) else tuple(int(b) for b in bits)
        if not bits or any(b < 2 or b > 16 for b in bits):
            raise ValueError(f"bits must be whole numbers in [2, 16] (got {bits})")
        self.bits = bits

    def describe(self):
        return {**super().describe(), "bits": list(self.bits)}

    def build(self, records, seed=0):
        return [r.question for r in records]

    def run(self, model, records, ctx):
        hf = weights_model(model)
        module = getattr(hf, "model", None)
        if not isinstance(module, torch.nn.Module):
            raise AttackSkipped(f"{model.name} has no local weights to quantise (an endpoint)")
        prompts = self.build(records, ctx.seed)
        per_bits = {}
        for bits in self.bits:
            with quantized(module, bits):
                gens = model.generate(prompts, max_new_tokens=ctx.max_new_tokens, batch_size=ctx.batch_size)
            per_bits[bits] = score_generations(records, gens, prompts)
        worst = max(self.bits, key=lambda b: (per_bits[b]["leak_rate"], -b))
        res = dict(per_bits[worst])
        res.update({"bits_worst": worst, "n_records": len(records),
                    "by_bits": {str(b): {"leak_rate": r["leak_rate"], "rouge_l_recall": r["rouge_l_recall"]}
                                for b, r in per_bits.items()}})
        return res

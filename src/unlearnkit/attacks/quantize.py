"""Quantization attack (Zhang et al., ICLR 2025, arXiv 2410.16454): round the weights to 4 or 8 bits and ask
again. Unlearning that moved weights only a little is undone by the rounding: the quantised unlearned model
lands back near the quantised original.

Every ``nn.Linear`` weight (the transformer blocks and the LM head) is rounded to its nearest level on a
symmetric per-output-channel grid (round-to-nearest, scale = max |w| / (2^(bits-1) - 1)) and turned back into
floats, in torch on the CPU. The model is changed in place for the measurement and restored afterwards, so a
guard is attacked through the model under it, unchanged otherwise. Writes go through the parameter itself (not
``.data``), so its version counter moves and inference caches keyed on it (the oneDNN packed weights,
``models/onednn.py``) repack the rounded weights instead of serving the originals. One greedy pass over the
questions per bit-width: the cost is ``len(bits)`` plain passes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from unlearnkit.attacks.base import Attack, AttackSkipped, score_generations
from unlearnkit.errors import ConfigError
from unlearnkit.models.base import weights_model
from unlearnkit.options import check_values, option


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
        seen = set()
        for m in module.modules():
            if isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:  # a tied weight is rounded once
                seen.add(id(m.weight))
                saved.append((m.weight, m.weight.detach().clone()))
                fake_quantize_(m.weight, bits)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, data in saved:
                p.copy_(data)  # not p.data: the version counter must move (models/onednn.py keys on it)


@dataclass
class QuantizeOptions:
    bits: tuple[int, ...] = option((4, 8), "bit widths tried, comma-separated", minimum=2, maximum=16)


class Quantize(Attack):
    name = "quantize"
    summary = "4- and 8-bit per-channel weight rounding, then the plain questions"
    Options = QuantizeOptions

    def __init__(self, bits=(4, 8)):
        bits = (bits,) if isinstance(bits, int) else tuple(bits)
        check_values(QuantizeOptions, {"bits": bits}, f"attack '{self.name}'")
        if not bits:
            raise ConfigError(f"attack '{self.name}': option bits is empty: give at least one bit width, e.g. 4,8")
        self.bits = bits

    def describe(self):
        return {**super().describe(), "bits": list(self.bits)}

    def budget(self):
        return {"bits": list(self.bits), "passes": len(self.bits)}

    def build(self, records, seed=0):
        return [r.question for r in records]

    def run(self, model, records, ctx):
        hf = weights_model(model)
        module = getattr(hf, "model", None)
        if not isinstance(module, torch.nn.Module):
            raise AttackSkipped(f"{model.name} has no local weights to quantise (an endpoint)")
        prompts = self.build(records, ctx.seed)
        per_bits, seconds = {}, {}
        for bits in self.bits:
            t0 = time.perf_counter()
            with quantized(module, bits):
                gens = model.generate(prompts, max_new_tokens=ctx.max_new_tokens, batch_size=ctx.batch_size)
            per_bits[bits] = score_generations(records, gens, prompts)
            seconds[bits] = time.perf_counter() - t0
        worst = max(self.bits, key=lambda b: (per_bits[b]["leak_rate"], -b))
        res = dict(per_bits[worst])
        res.update({"bits_worst": worst, "n_records": len(records),
                    "by_bits": {str(b): {"leak_rate": r["leak_rate"], "rouge_l_recall": r["rouge_l_recall"],
                                    "seconds": seconds[b]}
                                for b, r in per_bits.items()}})
        return res

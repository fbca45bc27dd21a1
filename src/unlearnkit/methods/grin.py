"""GRIN: Gradient-Ratio Influence + Noise (Anjarlekar & Pombra 2025).

Before training (``setup``):

1. ``G_f = Σ_batches |∇θ NLL(D_f)|`` and ``G_r = Σ_batches |∇θ NLL(D_r)|``, element-wise,
   over the whole forget / retain sets in batches of the train ``batch_size``;
2. ``S = G_f / (G_r + ε)``; the mask M is the top-p fraction of S — over all
   weights at once (default) or within each tensor (``per_tensor``). Scores keep 8 mantissa bits
   (``score_bits``) and ties go to the lowest positions, so the same data and seed give the same mask on
   any machine; ``retain_floor`` decides how entries with G_r ≈ 0 compete (see ``ratio_scores``);
3. noise ``θ[M] += N(0, (σ·std(θ_tensor))²)``, each weight's draw fixed by the train seed, its tensor's name
   and its position (``noise_by_position``): a weight that enters or leaves the mask changes its own noise
   only. (Drawn in mask order, one such weight shifted every later draw: a target that differed in the
   7th digit gave other noise on every masked weight, and forget quality 0.165 instead of 0.579.)
4. the mask is saved with the run: ``grin_mask.pt`` (indices) and
   ``grin_mask.json`` (counts per tensor, layer and module), see ``grin_mask``.

Then fine-tune with the NPO (default), GradDiff or GradAscent loss — the
existing methods' own loss code — updating only θ[M]: gradients outside M are
zeroed after each backward, and, because AdamW's weight decay would still
shrink every weight of a trained tensor, the entries outside M are copied back
from a snapshot right after each optimizer step (``after_step``; the snapshot is
kept only when ``weight_decay > 0`` — without decay, a zero gradient gives an
exactly zero AdamW update). Only tensors with at least one masked entry train.

Unverified details (docs/methods.md): ε = 1e-8, p = 1 %, σ = 0.1 relative to each
tensor's standard deviation, all exposed as options. The NPO reference
log-probs (and the KL reference) are taken from the model *before* the noise,
i.e. the original target. GRIN edits individual weights, so it refuses LoRA.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import torch

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import WeightEditingMethod, option
from unlearnkit.methods.grad_ascent import GradAscent
from unlearnkit.methods.grad_diff import GradDiff
from unlearnkit.methods.grin_mask import gradient_magnitudes, ratio_scores, round_scores, save_mask, select_top
from unlearnkit.methods.npo import NPO
from unlearnkit.methods.retain_terms import RETAIN_LOSSES

FINETUNE_LOSSES = ("npo", "grad_diff", "grad_ascent")
EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "wpe", "embed_in", "embed_out")


def position_draws(seed: int, name: str, numel: int, idx: torch.Tensor) -> torch.Tensor:
    """Standard normal draws for the entries ``idx`` of a tensor of ``numel`` entries: one draw per position,
    from a generator seeded by the train seed and the tensor's name only."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(numel, generator=gen)[idx]


def _is_embedding(name: str) -> bool:
    return any(part in EMBEDDING_NAMES for part in name.split("."))


@dataclass
class GRINOptions:
    p: float = option(0.01, "fraction of weights in the mask", minimum=0, maximum=1, exclusive_minimum=True)
    per_tensor: bool = option(False, "take the top-p within each tensor instead of globally")
    sigma: float = option(0.1, "noise std on masked weights, relative to each tensor's std (0 = no noise)", minimum=0)
    eps: float = option(1e-8, "ε in S = G_f / (G_r + ε)", minimum=0, exclusive_minimum=True)
    retain_floor: float = option(0.0, "adds this share of the mean G_r to ε, so entries the retain set never "
                                      "touches (G_r = 0) do not fill the mask on a tiny G_f (0 = the paper's ε only)",
                                minimum=0)
    score_bits: int = option(8, "mantissa bits kept of each score before ranking: float-rounding differences "
                                "between machines become ties, broken by position (0 = full precision)", minimum=0,
                              maximum=23)
    finetune_loss: str = option("npo", "fine-tuning loss", choices=FINETUNE_LOSSES)
    beta: float = option(0.1, "NPO inverse temperature β (finetune_loss=npo)", minimum=0, exclusive_minimum=True)
    alpha: float = option(1.0, "weight of the retain term (npo, grad_diff)", minimum=0)
    retain_loss: str = option("nll", "retain term: 'nll' or 'kl' to the frozen original (npo, grad_diff)",
                              choices=RETAIN_LOSSES)
    skip_embeddings: bool = option(False, "leave the token embeddings and LM head out of the mask (not in the paper: "
                                          "rows of tokens seen only in the forget set have G_r = 0 and fill it)")
    noise_by_position: bool = option(True, "draw each masked weight's noise from its tensor and position, so a "
                                           "weight entering or leaving the mask changes no other weight's noise "
                                           "(false: drawn in mask order, as runs before this option)")
    ADDED: ClassVar[dict] = {"noise_by_position": False}  # added after runs were recorded (see ECOOptions.ADDED)


class GRIN(WeightEditingMethod):
    name = "grin"
    summary = "Mask the weights with the highest forget/retain gradient ratio, add noise there, fine-tune only them."
    Options = GRINOptions

    def validate(self):
        o = self.options
        if o.finetune_loss == "npo":
            self._inner = NPO(beta=o.beta, alpha=o.alpha, retain_loss=o.retain_loss)
        elif o.finetune_loss == "grad_diff":
            self._inner = GradDiff(alpha=o.alpha, retain_loss=o.retain_loss)
        else:
            self._inner = GradAscent()

    # -- setup: scores, mask, noise ------------------------------------------------
    def setup(self, ctx):
        if ctx.uses_lora:
            raise ConfigError("GRIN edits individual weights selected by a mask; it cannot train LoRA adapters "
                              "(adapters are new weights that the mask does not cover). Run it without --lora.")
        if not ctx.retain_records:
            raise ConfigError("GRIN needs a retain set to compute its gradient ratio")
        o = self.options
        named = [(n, p) for n, p in ctx.base_model.named_parameters() if p.is_floating_point()
                 and not (o.skip_embeddings and _is_embedding(n))]
        bs = ctx.config.batch_size
        g_f = gradient_magnitudes(ctx, ctx.forget_records, named, bs)
        g_r = gradient_magnitudes(ctx, ctx.retain_records, named, bs)
        scores = round_scores(ratio_scores(g_f, g_r, o.eps, o.retain_floor), o.score_bits)
        del g_r
        indices = select_top(scores, o.p, o.per_tensor)
        del scores, g_f
        self._inner.setup(ctx)  # NPO reference log-probs / KL reference: the model before the noise
        seed = int(ctx.config.seed)
        gen = torch.Generator().manual_seed(seed)
        self._named: list[tuple[str, torch.nn.Parameter]] = []
        self._index: list[torch.Tensor] = []
        self._snapshot: list[torch.Tensor | None] = []
        keep = ctx.config.weight_decay > 0
        with torch.no_grad():
            for (name, p), idx in zip(named, indices):
                if idx.numel() == 0:
                    continue
                flat = p.view(-1)
                if o.sigma > 0:
                    std = float(p.float().std()) if p.numel() > 1 else 0.0
                    if o.noise_by_position:
                        draws = position_draws(seed, name, p.numel(), idx)
                    else:
                        draws = torch.randn(idx.numel(), generator=gen)
                    flat[idx.to(p.device)] += (draws * (o.sigma * std)).to(p.device, p.dtype)
                self._named.append((name, p))
                self._index.append(idx)
                self._snapshot.append(p.detach().clone() if keep else None)
        ctx.state["grin_mask"] = {n: i for (n, _), i in zip(self._named, self._index)}
        summary = save_mask(ctx.out_dir, ctx.state["grin_mask"], {n: tuple(p.shape) for n, p in named},
                            o.p, o.per_tensor)
        ctx.state["grin_mask_summary"] = {k: summary[k] for k in ("masked", "parameters", "fraction", "layers",
                                                                   "modules")}

    def trainable_parameters(self, ctx):
        return list(self._named)

    def loss(self, ctx, forget, retain):
        return self._inner.loss(ctx, forget, retain)

    # -- keep everything outside the mask fixed -------------------------------------
    def _on_device(self, i: int, p: torch.Tensor) -> torch.Tensor:
        idx = self._index[i]
        if idx.device != p.device:
            idx = self._index[i] = idx.to(p.device)
            if self._snapshot[i] is not None:
                self._snapshot[i] = self._snapshot[i].to(p.device)
        return idx

    def after_backward(self, ctx):
        for i, (_, p) in enumerate(self._named):
            if p.grad is None:
                continue
            idx = self._on_device(i, p)
            flat = p.grad.view(-1)
            kept = flat[idx]
            flat.zero_()
            flat[idx] = kept

    @torch.no_grad()
    def after_step(self, ctx):
        for i, (_, p) in enumerate(self._named):
            snap = self._snapshot[i]
            if snap is None:
                continue
            idx = self._on_device(i, p)
            flat = p.view(-1)  # through the parameter (not .data): its version counter moves, so caches of
            kept = flat[idx]    # the weights keyed on it (packed weights, prefix cache) see the restore
            p.copy_(self._snapshot[i])
            flat[idx] = kept

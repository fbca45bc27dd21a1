"""BLUR: Bi-Level UnleaRning (Reisizadeh et al. 2025).

The forget problem has priority: ``min_θ L_r(θ) s.t. θ ∈ argmin L_f(θ)``. Every
step computes two gradients over the *whole* effective batch (all micro-batches
of the step), ``g_f = ∇L_f`` and ``g_r = ∇L_r``, and steps along

    ξ = γ − α·<g_r, g_f> / ‖g_f‖²
    d = α·g_r + ξ·g_f  =  γ·g_f + α·(g_r − proj_{g_f} g_r)

so that ``<d, g_f> = γ‖g_f‖²``: forget progress every step, while the retain
gradient only contributes its component orthogonal to ``g_f``. With the default
α = 1 this is docs/methods.md's ``d = g_r + (γ − <g_r,g_f>/‖g_f‖²)·g_f``; α ≠ 1 gives the
paper's RMU variant ``d = g_f + α·(g_r − proj_{g_f} g_r)`` (γ = 1). When
``‖g_f‖² ≤ 1e-24`` (no forget signal) ``d = α·g_r``.

Inner products are global over all trainable parameters (with LoRA: the
adapters) and accumulate in float64. ``d`` is written into ``.grad``; the Trainer
then clips ``d`` (not the raw gradients) and takes the AdamW step.

Cost: one forward+backward of the forget loss and one of the retain loss per
micro-batch — the same passes as a GradDiff step, plus one stored copy of
``g_f`` (one tensor per trainable parameter) and the inner products.

Logged per step: ``forget_loss``, ``retain_loss``, ``gf_norm`` (‖g_f‖), ``gr_norm``,
``gr_dot_gf`` (<g_r,g_f>), ``xi`` (ξ), ``cos`` (cosine of g_r and g_f).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import WeightEditingMethod, option
from unlearnkit.methods.gradients import combine_into, dot, sq_norm, take_grads, trainable
from unlearnkit.methods.grad_ascent import GradAscent
from unlearnkit.methods.npo import NPO
from unlearnkit.methods.retain_terms import retain_loss
from unlearnkit.methods.rmu import RMUCore

FORGET_LOSSES = ("npo", "grad_ascent", "rmu")
RETAIN_LOSSES = ("nll", "kl", "rmu")
ZERO_NORM_SQ = 1e-24  # ‖g_f‖² at or below this counts as "no forget gradient"


@dataclass
class BLUROptions:
    forget_loss: str = option("npo", "lower-level (forget) loss", choices=FORGET_LOSSES)
    retain_loss: str = option("nll", "upper-level (retain) loss: 'nll', 'kl' to the frozen original, or 'rmu' "
                                     "(activation MSE to the frozen model; only with forget_loss=rmu)",
                              choices=RETAIN_LOSSES)
    gamma: float = option(1.0, "γ: required forget progress, <d, g_f> = γ·‖g_f‖²", minimum=0, exclusive_minimum=True)
    alpha: float = option(1.0, "α: weight of the retain component orthogonal to g_f (RMU variant)", minimum=0)
    beta: float = option(0.1, "NPO inverse temperature β (forget_loss=npo)", minimum=0, exclusive_minimum=True)
    layer: int | None = option(None, "RMU variant: steered layer ℓ; none = num_layers // 2", minimum=0)
    steering_coeff: float = option(6.5, "RMU variant: scale c of the random direction", minimum=0,
                                   exclusive_minimum=True)
    update_layers: tuple[int, ...] = option((), "RMU variant: layers whose mlp.down_proj trains (comma-separated); "
                                                "empty = (ℓ-2, ℓ-1, ℓ)", minimum=0)


class BLUR(WeightEditingMethod):
    name = "blur"
    summary = "Bi-level unlearning: forget gradient first, retain gradient projected orthogonal to it."
    Options = BLUROptions

    def validate(self):
        o = self.options
        if o.retain_loss == "rmu" and o.forget_loss != "rmu":
            raise ConfigError("retain_loss=rmu needs forget_loss=rmu (both act on the same layer's activations)")
        self._npo = NPO(beta=o.beta) if o.forget_loss == "npo" else None
        self._ga = GradAscent() if o.forget_loss == "grad_ascent" else None
        self._rmu = None
        if o.forget_loss == "rmu":
            self._rmu = RMUCore(o.layer, o.steering_coeff, o.update_layers)

    # -- hooks -----------------------------------------------------------------
    def setup(self, ctx):
        if self._npo is not None:
            self._npo.setup(ctx)  # reference log-probs of the forget set, before any step
        if self._rmu is not None:
            self._rmu.setup(ctx)
        if self.options.retain_loss == "kl":
            ctx.prepare_reference()

    def trainable_parameters(self, ctx):
        # The RMU variant trains what RMU trains; otherwise the Trainer's default.
        return self._rmu.named_trainable(ctx) if self._rmu is not None else None

    def forget_loss(self, ctx, forget):
        if self._npo is not None:
            return self._npo.forget_loss(ctx, forget)
        if self._rmu is not None:
            return self._rmu.forget_loss(ctx, forget)
        return self._ga.loss(ctx, forget, None)[0]

    def retain_loss(self, ctx, retain):
        if self.options.retain_loss == "rmu":
            return self._rmu.retain_loss(ctx, retain)
        return retain_loss(ctx, retain, self.options.retain_loss)

    def backward(self, ctx, micro_batches):
        params = trainable(ctx.model)
        for p in params:
            p.grad = None
        n = len(micro_batches)
        f_total = r_total = 0.0
        for forget, _ in micro_batches:  # g_f over the whole effective batch
            f = self.forget_loss(ctx, forget)
            ctx.check_finite(f, "forget loss")
            if f.requires_grad:
                ctx.accelerator.backward(f / n)
            f_total += float(f.detach()) / n
        g_f = take_grads(params)
        for _, retain in micro_batches:  # then g_r over the same effective batch
            r = self.retain_loss(ctx, retain)
            ctx.check_finite(r, "retain loss")
            if r.requires_grad:
                ctx.accelerator.backward(r / n)
            r_total += float(r.detach()) / n
        g_r = take_grads(params)

        gf_sq, gr_sq, gr_gf = sq_norm(g_f), sq_norm(g_r), dot(g_r, g_f)
        alpha, gamma = self.options.alpha, self.options.gamma
        xi = 0.0 if gf_sq <= ZERO_NORM_SQ else gamma - alpha * gr_gf / gf_sq
        ctx.check_finite(xi, "BLUR coefficient ξ")
        combine_into(params, g_r, alpha, g_f, xi)  # .grad = α·g_r + ξ·g_f
        cos = gr_gf / math.sqrt(gf_sq * gr_sq) if gf_sq > ZERO_NORM_SQ and gr_sq > 0 else 0.0
        return {"loss": f_total + r_total, "forget_loss": f_total, "retain_loss": r_total,
                "gf_norm": math.sqrt(gf_sq), "gr_norm": math.sqrt(gr_sq), "gr_dot_gf": gr_gf, "xi": xi, "cos": cos}

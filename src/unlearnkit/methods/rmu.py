"""RMU: Representation Misdirection for Unlearning (WMDP, Li et al. 2024).

Forget term: ``MSE(h_ℓ(D_f), c·u)`` — the output of decoder layer ℓ on forget data
is steered toward a fixed random direction ``u`` (unit norm) scaled by ``c``.
Retain term: ``α·MSE(h_ℓ(D_r), h_ℓ^frozen(D_r))`` — on retain data the same
activations stay where the frozen original puts them. Only the MLP
down-projection weights of layers ``ℓ-2..ℓ`` train.

Choices (docs/methods.md leaves them open; each is an option):

* ``layer`` — ℓ, the decoder layer whose *output* is steered (a forward hook on
  ``layers[ℓ]``; 0-based). ``none`` (the default) = the middle layer, ``num_layers // 2``. The
  WMDP setting for Zephyr-7B (32 layers) is ℓ = 7.
* ``steering_coeff`` — c. The WMDP paper uses 6.5 for Zephyr-7B; its code
  defaults to 20. Useful range 6.5–20; larger models need larger c because
  their activations have larger norms.
* ``alpha`` — α = 100, the WMDP code's default (the paper's Zephyr run uses 1200).
* ``update_layers`` — empty = ``(ℓ-2, ℓ-1, ℓ)`` (those ≥ 0). Only layers ≤ ℓ can
  change ``h_ℓ``, so a later layer is a configuration error.
* ``adaptive_scale`` — β of Adaptive RMU (Dang et al. 2024, "On effects of
  steering latent representation for LLM unlearning"): instead of a fixed c,
  each forget example's target is ``β·n·u`` with n the mean (over its real
  tokens) of the per-token L2 norm of the *frozen* layer-ℓ output. 0 = off
  (fixed c). Models whose middle-layer activations are far larger than 6.5–20
  (SmolLM2: norms in the hundreds to thousands) barely move with a fixed c.
* ``forget_positions`` — ``all`` (every real token, as above) or ``answer`` (the
  forget MSE covers only the answer tokens). On chat-formatted question/answer data
  every example shares the chat template's tokens, so steering ``all`` positions of
  the forget examples fights the retain term on exactly those positions (on SmolLM2
  with ``adaptive_scale`` it broke general questions while the forget answers stayed).
* ``u`` is uniform in [0, 1)^d, normalised to unit length (as in the WMDP code),
  drawn from a generator seeded by the train seed.
* The MSE averages over every real token of the sequence — prompt *and* answer,
  padding excluded by the attention mask — and over hidden dimensions. RMU
  acts on representations of the whole text, not only on the answer tokens
  the likelihood losses use; the WMDP code averages over all positions
  (including padding, which we leave out so that batch composition does not
  change the loss).

The frozen retain activations come from the model itself with the original
down-projection weights swapped back in for the forward (with LoRA: with the
adapters disabled). Because nothing else trains, that *is* the frozen model,
without keeping a second copy in memory. The forward stops right after layer ℓ
(nothing later affects the loss), which roughly halves the cost of a step on a
middle layer.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Literal

import torch

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import WeightEditingMethod, option


@dataclass
class RMUOptions:
    layer: int | None = option(None, "decoder layer ℓ whose output is steered (0-based); none = num_layers // 2",
                               minimum=0)
    steering_coeff: float = option(6.5, "c: scale of the random target direction (6.5–20; WMDP paper: 6.5)",
                                   minimum=0, exclusive_minimum=True)
    alpha: float = option(100.0, "α: weight of the retain activation MSE (WMDP code default 100)", minimum=0)
    update_layers: tuple[int, ...] = option((), "layers whose mlp.down_proj trains (comma-separated); "
                                                "empty = (ℓ-2, ℓ-1, ℓ)", minimum=0)
    adaptive_scale: float = option(0.0, "β of Adaptive RMU: c = β × each forget example's mean frozen activation "
                                        "norm at ℓ (0 = fixed steering_coeff)", minimum=0)
    forget_positions: Literal["all", "answer"] = option("all", "tokens the forget MSE covers: all (every real token, WMDP) or answer "
                                                         "(answer tokens only: chat templates shared with "
                                                         "retain data stay out)")


class _Stop(Exception):
    """Raised by the layer hook: the rest of the forward pass is not needed."""


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder block list of a transformers causal LM (also inside peft / accelerate wrappers)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in {"layers", "h", "blocks"}:
            if best is None or len(module) > len(best):
                best = module
    if best is None:
        raise ConfigError(f"{type(model).__name__}: no decoder layer list found (RMU needs model.model.layers)")
    return best


def layer_output(model: torch.nn.Module, layer: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Output hidden states [B, T, H] of ``layer`` for ``batch``; the forward stops there."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    handle = layer.register_forward_hook(hook)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError("RMU: the steered layer did not run in the forward pass")
    return captured[0]


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real tokens (attention mask) and hidden dimensions."""
    mask = attention_mask.to(hidden.device, torch.float32).unsqueeze(-1)
    diff = (hidden.float() - target.float()).pow(2) * mask
    return diff.sum() / (mask.sum().clamp_min(1) * hidden.shape[-1])


class RMUCore:
    """The representation losses, shared by the RMU method and BLUR's RMU variant."""

    def __init__(self, layer: int | None, steering_coeff: float, update_layers: tuple, adaptive_scale: float = 0.0,
                 forget_positions: str = "all"):
        self.layer_opt = layer
        self.steering_coeff = steering_coeff
        self.adaptive_scale = adaptive_scale
        self.forget_positions = forget_positions
        self.update_opt = tuple(update_layers)
        self.layer = -1
        self.update_layers: tuple[int, ...] = ()
        self.direction: torch.Tensor | None = None  # u, unit length
        self.originals: dict[str, torch.Tensor] = {}

    def resolve(self, ctx) -> None:
        """Fix ℓ and the updated layers for this model; ConfigError before any training if invalid."""
        n = len(decoder_layers(ctx.base_model))
        layer = n // 2 if self.layer_opt is None else self.layer_opt
        if not 0 <= layer < n:
            raise ConfigError(f"RMU layer {layer} does not exist: this model has {n} decoder layers, "
                              f"valid layers are 0..{n - 1} (or none for the middle layer)")
        update = self.update_opt or tuple(i for i in (layer - 2, layer - 1, layer) if i >= 0)
        bad = [i for i in update if not 0 <= i <= layer]
        if bad:
            raise ConfigError(f"update_layers {bad} cannot change layer {layer}'s output: choose layers in 0..{layer}")
        self.layer, self.update_layers = layer, tuple(sorted(set(update)))

    def setup(self, ctx) -> None:
        self.resolve(ctx)
        hidden = ctx.base_model.config.hidden_size
        gen = torch.Generator().manual_seed(int(ctx.config.seed))
        u = torch.rand(hidden, generator=gen)
        self.direction = u / u.norm()
        if not ctx.uses_lora:
            self.originals = {n: p.detach().clone() for n, p in self.named_trainable(ctx)}

    def _is_updated(self, name: str) -> bool:
        m = re.search(r"layers\.(\d+)\.mlp\.down_proj\.", name)
        return bool(m) and int(m.group(1)) in self.update_layers

    def named_trainable(self, ctx) -> list[tuple[str, torch.nn.Parameter]]:
        """mlp.down_proj weights of the updated layers (with LoRA: their adapter weights)."""
        chosen = []
        for name, p in ctx.base_model.named_parameters():
            if not self._is_updated(name):
                continue
            if ctx.uses_lora and "lora_" not in name:
                continue
            if not ctx.uses_lora and not name.endswith("down_proj.weight"):
                continue
            chosen.append((name, p))
        if not chosen:
            raise ConfigError(f"RMU: no mlp.down_proj weights found in layers {self.update_layers} "
                              f"(with LoRA, down_proj must be among the adapted modules)")
        return chosen

    def _layer_module(self, ctx) -> torch.nn.Module:
        return decoder_layers(ctx.base_model)[self.layer]

    def hidden(self, ctx, batch) -> torch.Tensor:
        return layer_output(ctx.model, self._layer_module(ctx), batch)

    @contextlib.contextmanager
    def _frozen(self, ctx):
        if ctx.uses_lora:
            with ctx.base_model.disable_adapter():
                yield
            return
        params = dict(ctx.base_model.named_parameters())
        saved = {}
        try:
            for name, orig in self.originals.items():
                p = params[name]
                if orig.device != p.device:
                    orig = self.originals[name] = orig.to(p.device)
                saved[name] = p.data
                p.data = orig
            yield
        finally:
            for name, data in saved.items():
                params[name].data = data

    @torch.no_grad()
    def frozen_hidden(self, ctx, batch) -> torch.Tensor:
        with self._frozen(ctx):
            return layer_output(ctx.model, self._layer_module(ctx), batch)

    def forget_mask(self, batch) -> torch.Tensor:
        """The positions the forget MSE covers: real tokens, or only the answer tokens (labels != -100)."""
        if self.forget_positions == "answer":
            return (batch["labels"] != -100).long() * batch["attention_mask"]
        return batch["attention_mask"]

    def adaptive_coeff(self, ctx, batch) -> torch.Tensor:
        """[B, 1, 1]: β × each example's mean per-token norm of the frozen layer-ℓ output (covered tokens only)."""
        frozen = self.frozen_hidden(ctx, batch).float()
        mask = self.forget_mask(batch).to(frozen.device, torch.float32)
        norms = (frozen.norm(dim=-1) * mask).sum(1) / mask.sum(1).clamp_min(1)
        return (self.adaptive_scale * norms).view(-1, 1, 1)

    def forget_loss(self, ctx, batch) -> torch.Tensor:
        h = self.hidden(ctx, batch)
        coeff = self.adaptive_coeff(ctx, batch).to(h.device) if self.adaptive_scale > 0 else self.steering_coeff
        target = (coeff * self.direction.to(h.device)).expand_as(h)
        return masked_mse(h, target, self.forget_mask(batch))

    def retain_loss(self, ctx, batch) -> torch.Tensor:
        frozen = self.frozen_hidden(ctx, batch)
        return masked_mse(self.hidden(ctx, batch), frozen, batch["attention_mask"])


class RMU(WeightEditingMethod):
    name = "rmu"
    summary = "Steer layer-ℓ activations on forget data to a random direction; keep retain activations."
    Options = RMUOptions

    def validate(self):
        o = self.options
        self.core = RMUCore(o.layer, o.steering_coeff, o.update_layers, o.adaptive_scale, o.forget_positions)

    def setup(self, ctx):
        self.core.setup(ctx)

    def trainable_parameters(self, ctx):
        return self.core.named_trainable(ctx)

    def loss(self, ctx, forget, retain):
        f = self.core.forget_loss(ctx, forget)
        r = self.core.retain_loss(ctx, retain)
        return f + self.options.alpha * r, {"forget_mse": float(f.detach()), "retain_mse": float(r.detach())}

import json

import numpy as np
import pytest
import torch

from unlearnkit.errors import ConfigError
from unlearnkit.methods.blur import BLUR
from unlearnkit.methods.grad_diff import GradDiff
from unlearnkit.methods.gradients import trainable
from unlearnkit.methods.registry import build_method
from unlearnkit.training.config import TrainConfig
from unlearnkit.training.loop import Trainer


def _forget_prob(lm, records):
    return float(np.mean([s.prob for s in lm.score([r.question for r in records], [r.answer for r in records])]))


def _weights(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def _flat64(grads, params):
    return torch.cat([(torch.zeros_like(p) if g is None else g).double().reshape(-1) for g, p in zip(grads, params)])


def _independent_grads(ctx, params, losses_fn, micro):
    """Σ_k ∇(loss_k / n) by torch.autograd.grad: a second code path, independent of BLUR's."""
    total = [torch.zeros_like(p) for p in params]
    for batch in micro:
        loss = losses_fn(ctx, batch) / len(micro)
        for t, g in zip(total, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                t.add_(g)
    return total


class _Probe(BLUR):
    """BLUR that, on the first step, records the direction d it wrote into .grad and recomputes g_f, g_r."""

    def backward(self, ctx, micro_batches):
        logs = super().backward(ctx, micro_batches)
        if ctx.step == 0:
            params = trainable(ctx.model)
            d = [None if p.grad is None else p.grad.detach().clone() for p in params]
            g_f = _independent_grads(ctx, params, self.forget_loss, [f for f, _ in micro_batches])
            g_r = _independent_grads(ctx, params, self.retain_loss, [r for _, r in micro_batches])
            self.probe = (_flat64(d, params), _flat64(g_f, params), _flat64(g_r, params), logs)
        return logs


class _ConstantForget(_Probe):
    """A forget loss that does not depend on the weights' effect: its gradient is exactly zero."""

    def forget_loss(self, ctx, forget):
        return (ctx.forward(forget).logits * 0.0).sum() + 1.0


@pytest.mark.parametrize("gamma", [1.0, 0.5])
def test_direction_keeps_gamma_forget_progress(gamma, tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=3, warmup_ratio=0.0, max_grad_norm=None)
    method = _Probe(gamma=gamma)
    method.apply(tiny_lm, simple_task, tmp_path, cfg)
    d, g_f, g_r, logs = method.probe
    gf_sq = float(g_f @ g_f)
    assert gf_sq > 0 and float(g_r @ g_r) > 0
    assert float(d @ g_f) == pytest.approx(gamma * gf_sq, rel=1e-5)
    xi = gamma - float(g_r @ g_f) / gf_sq
    torch.testing.assert_close(d, g_r + xi * g_f, rtol=1e-4, atol=1e-7)
    assert logs["xi"] == pytest.approx(xi, rel=1e-4)
    assert logs["gf_norm"] == pytest.approx(gf_sq ** 0.5, rel=1e-4)
    assert logs["gr_dot_gf"] == pytest.approx(float(g_r @ g_f), rel=1e-3, abs=1e-9)
    assert not torch.allclose(d, g_r)  # the projection did something


def test_zero_forget_gradient_falls_back_to_retain_gradient(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=3, warmup_ratio=0.0, max_grad_norm=None)
    method = _ConstantForget()
    method.apply(tiny_lm, simple_task, tmp_path, cfg)
    d, g_f, g_r, logs = method.probe
    assert float(g_f.abs().max()) == 0.0
    assert logs["xi"] == 0.0 and logs["gf_norm"] == 0.0
    torch.testing.assert_close(d, g_r, rtol=1e-6, atol=1e-9)


def test_accumulated_step_equals_one_big_batch(tiny_lm, simple_task, tmp_path):
    # simple_task's records have equal lengths, so 2 micro-batches of 2 = one batch of 4 exactly.
    big = TrainConfig(lr=1e-3, max_steps=2, batch_size=4, grad_accum=1, warmup_ratio=0.0, max_grad_norm=None)
    small = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, grad_accum=2, warmup_ratio=0.0, max_grad_norm=None)
    a = BLUR().apply(tiny_lm, simple_task, tmp_path / "a", big)
    b = BLUR().apply(tiny_lm, simple_task, tmp_path / "b", small)
    wa, wb, w0 = _weights(a), _weights(b), _weights(tiny_lm)
    assert any(not torch.equal(wa[n], v) for n, v in w0.items())
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=1e-5)
    la = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    for ra, rb in zip(la, lb):
        assert ra["xi"] == pytest.approx(rb["xi"], rel=1e-4)
        assert ra["gf_norm"] == pytest.approx(rb["gf_norm"], rel=1e-4)


def test_lora_trains_only_adapters(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-2, max_steps=2, batch_size=2, lora=True, lora_r=4, warmup_ratio=0.0)
    method = _Probe()
    out = method.apply(tiny_lm, simple_task, tmp_path, cfg)
    d, g_f, g_r, logs = method.probe
    assert float(d @ g_f) == pytest.approx(float(g_f @ g_f), rel=1e-5)
    assert d.numel() < sum(p.numel() for p in tiny_lm.model.parameters()) / 2  # d spans the adapters only
    changed = [n for n, v in _weights(out).items() if not torch.equal(v, _weights(tiny_lm)[n])]
    assert changed and all("proj" in n for n in changed)


@pytest.mark.parametrize("forget_loss", ["npo", "grad_ascent"])
def test_blur_lowers_forget_probability(forget_loss, tiny_target, simple_task, tmp_path):
    before = _forget_prob(tiny_target, simple_task.forget)
    cfg = TrainConfig(lr=3e-3, max_steps=6, batch_size=3, warmup_ratio=0.0)
    out = build_method("blur", {"forget_loss": forget_loss}).apply(tiny_target, simple_task, tmp_path, cfg)
    assert _forget_prob(out, simple_task.forget) < 0.9 * before


def test_rmu_variant_trains_only_down_proj(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-2, max_steps=2, batch_size=3, warmup_ratio=0.0)
    out = build_method("blur", {"forget_loss": "rmu", "retain_loss": "rmu", "layer": "1", "update_layers": "1"}) \
        .apply(tiny_lm, simple_task, tmp_path, cfg)
    changed = {n for n, v in _weights(out).items() if not torch.equal(v, _weights(tiny_lm)[n])}
    assert changed == {"model.layers.1.mlp.down_proj.weight"}
    first = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])
    assert first["retain_loss"] == pytest.approx(0.0, abs=1e-10)  # frozen activations = current ones at step 0


class _Counting:
    """Counts forward passes of the trained model during the steps (not setup)."""

    def setup(self, ctx):
        super().setup(ctx)
        self.calls = 0

        def hook(*_):
            self.calls += 1

        ctx.base_model.register_forward_pre_hook(hook)


class _CountBLUR(_Counting, BLUR):
    pass


class _CountGradDiff(_Counting, GradDiff):
    pass


def test_a_step_costs_the_forward_passes_of_a_graddiff_step(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=3, batch_size=2, grad_accum=2, warmup_ratio=0.0)
    blur, gd = _CountBLUR(), _CountGradDiff()
    blur.apply(tiny_lm, simple_task, tmp_path / "b", cfg)
    gd.apply(tiny_lm, simple_task, tmp_path / "g", cfg)
    assert blur.calls == gd.calls == 3 * 2 * 2


@pytest.mark.parametrize("opts,match", [
    ({"forget_loss": "dpo"}, "forget_loss must be one of"),
    ({"retain_loss": "mse"}, "retain_loss must be one of"),
    ({"retain_loss": "rmu"}, "needs forget_loss=rmu"),
    ({"gamma": "0"}, "gamma must be > 0"),
    ({"beta": "-1"}, "beta must be > 0"),
    ({"alpha": "-1"}, "alpha must be >= 0"),
    ({"forget_loss": "rmu", "steering_coeff": "0"}, "steering_coeff must be > 0"),
])
def test_bad_options_fail_before_training(opts, match):
    with pytest.raises(ConfigError, match=match):
        build_method("blur", opts)


def test_rmu_variant_bad_layer_fails_before_training(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=2)
    with pytest.raises(ConfigError, match=r"valid layers are 0\.\.1"):
        build_method("blur", {"forget_loss": "rmu", "layer": "7"}).apply(tiny_lm, simple_task, tmp_path, cfg)
    assert not (tmp_path / "train_log.jsonl").exists()

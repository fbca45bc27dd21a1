import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unlearnkit.errors import ConfigError
from unlearnkit.methods.registry import build_method
from unlearnkit.methods.rmu import RMUCore, decoder_layers, layer_output, masked_mse
from unlearnkit.training.config import TrainConfig


def _forget_prob(lm, records):
    return float(np.mean([s.prob for s in lm.score([r.question for r in records], [r.answer for r in records])]))


def _changed(out, lm):
    before = dict(lm.model.named_parameters())
    return {n for n, v in out.model.named_parameters() if not torch.equal(v, before[n])}


@pytest.mark.parametrize("opts,expected", [
    ({}, {0, 1}),  # 2 layers: ℓ = 1, default (ℓ-2, ℓ-1, ℓ) without the negative index
    ({"layer": "1", "update_layers": "1"}, {1}),
    ({"layer": "0"}, {0}),
])
def test_only_allowed_down_proj_weights_change(opts, expected, tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-2, max_steps=3, batch_size=3, warmup_ratio=0.0, weight_decay=0.1)
    out = build_method("rmu", opts).apply(tiny_lm, simple_task, tmp_path, cfg)
    assert _changed(out, tiny_lm) == {f"model.layers.{i}.mlp.down_proj.weight" for i in expected}


def test_lora_adapters_only_on_allowed_down_proj(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-2, max_steps=3, batch_size=3, warmup_ratio=0.0, lora=True, lora_r=4)
    out = build_method("rmu", {"layer": "1", "update_layers": "1"}).apply(tiny_lm, simple_task, tmp_path, cfg)
    assert _changed(out, tiny_lm) == {"model.layers.1.mlp.down_proj.weight"}


def test_losses_start_at_frozen_and_forget_mse_falls(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-1, max_steps=8, batch_size=3, warmup_ratio=0.0)
    build_method("rmu", {"alpha": "1"}).apply(tiny_lm, simple_task, tmp_path, cfg)
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["retain_mse"] == pytest.approx(0.0, abs=1e-10)  # frozen reference = model before step 1
    assert log[-1]["retain_mse"] > 0
    assert log[-1]["forget_mse"] < 0.9 * log[0]["forget_mse"]


def test_layer_output_is_that_layers_hidden_state(tiny_lm):
    batch = tiny_lm.encode(["Where does Vel0 live?"], ["Vel0 lives in Orsk 0."])
    with torch.no_grad():
        ref = tiny_lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            output_hidden_states=True).hidden_states
        h = layer_output(tiny_lm.model, decoder_layers(tiny_lm.model)[0], batch)
    torch.testing.assert_close(h, ref[1])


def test_adaptive_target_scales_with_each_examples_frozen_norm(tiny_lm):
    core = RMUCore(0, 6.5, (), adaptive_scale=2.0)
    m = tiny_lm.model
    ctx = SimpleNamespace(base_model=m, model=m, uses_lora=False, config=SimpleNamespace(seed=0))
    core.setup(ctx)
    batch = tiny_lm.encode(["Where does Vel0 live?", "Who?"], ["Vel0 lives in Orsk 0.", "Vel1."])
    with torch.no_grad():
        h = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
              output_hidden_states=True).hidden_states[1]
        coeff = core.adaptive_coeff(ctx, batch).view(-1)
        loss = core.forget_loss(ctx, batch)
    for i in range(2):  # mean per-token norm over the real tokens only
        real = batch["attention_mask"][i].bool()
        assert float(coeff[i]) == pytest.approx(2.0 * float(h[i][real].norm(dim=-1).mean()), rel=1e-5)
    assert float(coeff[0]) != pytest.approx(float(coeff[1]), rel=1e-3)
    target = coeff.view(-1, 1, 1) * core.direction
    assert float(loss) == pytest.approx(float(masked_mse(h, target.expand_as(h), batch["attention_mask"])), rel=1e-5)


def test_forget_positions_answer_covers_only_answer_tokens(tiny_lm):
    m = tiny_lm.model
    ctx = SimpleNamespace(base_model=m, model=m, uses_lora=False, config=SimpleNamespace(seed=0))
    batch = tiny_lm.encode(["Where does Vel0 live?", "Who?"], ["Vel0 lives in Orsk 0.", "Vel1."])
    answer, everything = RMUCore(0, 6.5, (), forget_positions="answer"), RMUCore(0, 6.5, ())
    for core in (answer, everything):
        core.setup(ctx)
    mask = answer.forget_mask(batch)
    assert torch.equal(mask.bool(), (batch["labels"] != -100) & batch["attention_mask"].bool())
    assert 0 < int(mask.sum()) < int(batch["attention_mask"].sum())
    with torch.no_grad():
        h = layer_output(m, decoder_layers(m)[0], batch)
        expected = masked_mse(h, (6.5 * answer.direction).expand_as(h), mask)
        assert float(answer.forget_loss(ctx, batch)) == pytest.approx(float(expected), rel=1e-6)
        assert float(answer.forget_loss(ctx, batch)) != pytest.approx(float(everything.forget_loss(ctx, batch)))


def test_adaptive_rmu_trains_and_forget_mse_falls(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-1, max_steps=6, batch_size=3, warmup_ratio=0.0)
    build_method("rmu", {"adaptive_scale": "3", "alpha": "1"}).apply(tiny_lm, simple_task, tmp_path, cfg)
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["forget_mse"] < 0.9 * log[0]["forget_mse"]


def test_masked_mse_ignores_padding():
    h = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert float(masked_mse(h, target, mask)) == pytest.approx((1 + 9) / 2)


def test_rmu_lowers_forget_probability(tiny_target, simple_task, tmp_path):
    before = _forget_prob(tiny_target, simple_task.forget)
    cfg = TrainConfig(lr=1e-1, max_steps=8, batch_size=3, warmup_ratio=0.0)
    out = build_method("rmu").apply(tiny_target, simple_task, tmp_path, cfg)
    assert _forget_prob(out, simple_task.forget) < 0.9 * before


@pytest.mark.parametrize("opts,match", [
    ({"steering_coeff": "0"}, "steering_coeff must be > 0"),
    ({"alpha": "-1"}, "alpha must be >= 0"),
    ({"layer": "-3"}, "layer must be"),
    ({"update_layers": "-1"}, "update_layers must be"),
    ({"adaptive_scale": "-0.5"}, "adaptive_scale must be >= 0"),
    ({"forget_positions": "prompt"}, "forget_positions must be"),
])
def test_bad_options_fail_at_build(opts, match):
    with pytest.raises(ConfigError, match=match):
        build_method("rmu", opts)


@pytest.mark.parametrize("opts,match", [
    ({"layer": "2"}, r"valid layers are 0\.\.1"),
    ({"layer": "0", "update_layers": "1"}, r"cannot change layer 0"),
])
def test_bad_layers_fail_before_training(opts, match, tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=2)
    with pytest.raises(ConfigError, match=match):
        build_method("rmu", opts).apply(tiny_lm, simple_task, tmp_path, cfg)
    assert not (tmp_path / "train_log.jsonl").exists()

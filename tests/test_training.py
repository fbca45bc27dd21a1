import json

import pytest
import torch

from unlearnkit.errors import ConfigError, TrainingDivergedError
from unlearnkit.methods.finetune import FineTune
from unlearnkit.methods.grad_ascent import GradAscent
from unlearnkit.training.config import TrainConfig
from unlearnkit.training.loop import Trainer
from unlearnkit.training.sampling import step_indices


def _mean_nll(lm, records):
    scores = lm.score([r.question for r in records], [r.answer for r in records])
    return sum(s.nll for s in scores) / len(scores)


def _weights(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def test_finetune_learns_and_leaves_input_untouched(tiny_lm, simple_task, tmp_path):
    before = _weights(tiny_lm)
    start = _mean_nll(tiny_lm, simple_task.forget)
    cfg = TrainConfig(lr=3e-3, max_steps=15, batch_size=4, warmup_ratio=0.0)
    tuned = Trainer(FineTune(), tiny_lm, simple_task.forget, None, cfg, tmp_path).run()
    assert _mean_nll(tuned, simple_task.forget) < start - 0.5
    for name, value in _weights(tiny_lm).items():
        assert torch.equal(value, before[name]), f"input model changed: {name}"
    assert not (tmp_path / "checkpoint").exists()  # removed once complete
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 16))


def test_gradient_accumulation_equals_one_big_batch(tiny_lm, simple_task, tmp_path):
    big = TrainConfig(lr=1e-3, max_steps=2, batch_size=4, grad_accum=1, warmup_ratio=0.0, max_grad_norm=None)
    small = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, grad_accum=2, warmup_ratio=0.0, max_grad_norm=None)
    a = Trainer(GradAscent(), tiny_lm, simple_task.forget, None, big, tmp_path / "a").run()
    b = Trainer(GradAscent(), tiny_lm, simple_task.forget, None, small, tmp_path / "b").run()
    wa, wb = _weights(a), _weights(b)
    assert any(not torch.equal(wa[n], v) for n, v in _weights(tiny_lm).items())
    # AdamW divides by sqrt(v) + 1e-8: where a gradient is itself ~1e-8, float rounding of the two
    # batchings moves that element's step by a few percent of lr. A wrong accumulation (a missing
    # 1/grad_accum, a dropped micro-batch) moves most elements by ~lr.
    for name in wa:
        gap = (wa[name] - wb[name]).abs()
        assert (gap <= 1e-6).float().mean() >= 0.999, name
        assert gap.max() <= 0.02 * big.lr, name


class _Interrupt(Exception):
    pass


class _StopAt(FineTune):
    """Fine-tuning that dies at a given step, like a killed process."""

    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = stop_at

    def loss(self, ctx, forget, retain):
        if ctx.step == self.stop_at:
            raise _Interrupt
        return super().loss(ctx, forget, retain)


def test_interrupted_run_resumes_to_the_same_weights(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=2e-3, max_steps=6, batch_size=2, checkpoint_every=2, warmup_ratio=0.3)
    straight = Trainer(FineTune(), tiny_lm, simple_task.forget, None, cfg, tmp_path / "a").run()
    with pytest.raises(_Interrupt):
        Trainer(_StopAt(5), tiny_lm, simple_task.forget, None, cfg, tmp_path / "b").run()
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4
    resumed = Trainer(FineTune(), tiny_lm, simple_task.forget, None, cfg, tmp_path / "b").run()
    for name, value in _weights(straight).items():
        torch.testing.assert_close(value, _weights(resumed)[name], atol=1e-6, rtol=1e-5)


def test_resumed_run_logs_each_step_once(tiny_lm, simple_task, tmp_path):
    """Steps after the last checkpoint run again on resume: their first log rows are dropped."""
    cfg = TrainConfig(lr=2e-3, max_steps=6, batch_size=2, checkpoint_every=2, warmup_ratio=0.0)
    with pytest.raises(_Interrupt):
        Trainer(_StopAt(3), tiny_lm, simple_task.forget, None, cfg, tmp_path).run()  # logs 1..3, checkpoint at 2
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    Trainer(FineTune(), tiny_lm, simple_task.forget, None, cfg, tmp_path).run()
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    elapsed = [r["elapsed"] for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[2] >= elapsed[1]  # training time counts every segment


def test_two_runs_into_one_directory_cannot_overlap(tiny_lm, tiny_task, tmp_path):
    from unlearnkit.workflows.unlearn import output_lock, unlearn
    from unlearnkit.methods.registry import build_method

    with output_lock(tmp_path / "o"):
        with pytest.raises(ConfigError, match="another run is writing"):
            unlearn(tiny_lm, tiny_task, build_method("grad_ascent", {}), TrainConfig(max_steps=1, batch_size=2),
                    tmp_path / "o", model_spec="tiny")
    _, record = unlearn(tiny_lm, tiny_task, build_method("grad_ascent", {}), TrainConfig(max_steps=1, batch_size=2),
                        tmp_path / "o", model_spec="tiny")
    assert record["steps"] == 1


def test_checkpoint_of_other_config_is_refused(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=2e-3, max_steps=4, batch_size=2, checkpoint_every=1)
    with pytest.raises(_Interrupt):
        Trainer(_StopAt(2), tiny_lm, simple_task.forget, None, cfg, tmp_path).run()
    other = TrainConfig(lr=1e-3, max_steps=4, batch_size=2, checkpoint_every=1)
    with pytest.raises(ConfigError, match="different configuration"):
        Trainer(FineTune(), tiny_lm, simple_task.forget, None, other, tmp_path).run()


class _NaNAt(FineTune):
    def loss(self, ctx, forget, retain):
        loss, logs = super().loss(ctx, forget, retain)
        return (loss * float("nan") if ctx.step == 2 else loss), logs


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=5, batch_size=2, checkpoint_every=1)
    with pytest.raises(TrainingDivergedError, match=r"became nan at step 2.*Lower the learning rate"):
        Trainer(_NaNAt(), tiny_lm, simple_task.forget, None, cfg, tmp_path).run()
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2  # the last good state, before the bad step


def test_lora_trains_and_merges_into_a_plain_model(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-2, max_steps=3, batch_size=2, lora=True, lora_r=4)
    out = Trainer(GradAscent(), tiny_lm, simple_task.forget, None, cfg, tmp_path).run()
    assert type(out.model).__name__ == "LlamaForCausalLM"
    changed = [n for n, v in _weights(out).items() if not torch.equal(v, _weights(tiny_lm)[n])]
    assert changed and all("proj" in n for n in changed)  # LoRA touches only the adapted linear layers


@pytest.mark.parametrize("field,value,match", [
    ("lr", 0.0, "lr must be > 0"), ("batch_size", 0, "batch_size"), ("scheduler", "weird", "scheduler must be"),
    ("warmup_ratio", 1.5, "warmup_ratio"),
])
def test_bad_train_config_is_rejected(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value}).validate()


def test_step_indices_cover_each_epoch_once():
    seen = [i for step in range(3) for i in step_indices(6, step, 2, seed=1)]
    assert sorted(seen) == list(range(6))
    assert step_indices(6, 4, 2, seed=1) == step_indices(6, 4, 2, seed=1)

import json

import numpy as np
import pytest
import torch

from unlearnkit.errors import ConfigError
from unlearnkit.methods.grin import GRIN
from unlearnkit.methods.grin_mask import dense_masks, load_mask, ratio_scores, round_scores, select_top
from unlearnkit.methods.registry import build_method
from unlearnkit.training.config import TrainConfig
from unlearnkit.training.loop import Trainer


def _forget_prob(lm, records):
    return float(np.mean([s.prob for s in lm.score([r.question for r in records], [r.answer for r in records])]))


def _params(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def _masks(run_dir, params):
    dense = dense_masks(load_mask(run_dir))
    return {n: dense.get(n, torch.zeros(p.shape, dtype=torch.bool)) for n, p in params.items()}


def test_select_top_global_and_per_tensor():
    a = torch.tensor([[0.0, 9.0], [1.0, 2.0]])
    b = torch.tensor([8.0, 7.0, 0.5, 0.1, 0.2, 0.3])
    glob = select_top([a, b], 0.3, per_tensor=False)  # round(0.3·10) = 3: 9, 8, 7
    assert glob[0].tolist() == [1] and glob[1].tolist() == [0, 1]
    per = select_top([a, b], 0.5, per_tensor=True)  # 2 of a, 3 of b
    assert per[0].tolist() == [1, 3] and per[1].tolist() == [0, 1, 2]
    tiny = select_top([a, b], 1e-6, per_tensor=True)
    assert [t.numel() for t in tiny] == [1, 1]  # at least one entry per tensor


def test_ties_go_to_the_lowest_positions_whatever_topk_does():
    a = torch.tensor([1.0, 5.0, 5.0, 5.0])
    b = torch.tensor([5.0, 0.0, 5.0])
    glob = select_top([a, b], 3 / 7, per_tensor=False)  # 3 of five 5.0s: the first three positions
    assert glob[0].tolist() == [1, 2, 3] and glob[1].tolist() == []
    per = select_top([a, b], 0.5, per_tensor=True)  # 2 of a (three tied), round(1.5) = 2 of b
    assert per[0].tolist() == [1, 2] and per[1].tolist() == [0, 2]


def test_rounded_scores_turn_float_noise_into_ties():
    base = torch.tensor([3.0, 1.0, 2.0, 0.0])
    noisy = base + torch.tensor([0.0, 1e-6, 0.0, 0.0])  # another machine's last bits
    a, b = round_scores([base.clone()], 8)[0], round_scores([noisy.clone()], 8)[0]
    assert torch.equal(a, b)
    assert torch.equal(round_scores([base.clone()], 0)[0], base)
    assert round_scores([torch.tensor([1.0 + 2 ** -4])], 8)[0].item() == 1.0 + 2 ** -4  # coarse values kept


def test_retain_floor_keeps_untouched_entries_from_winning_on_a_tiny_forget_gradient():
    g_f = [torch.tensor([1e-3, 2.0, 0.5])]
    g_r = [torch.tensor([0.0, 1.0, 1.0])]  # entry 0: the retain set never touches it
    plain = ratio_scores([t.clone() for t in g_f], [t.clone() for t in g_r], 1e-8)[0]
    assert plain.argmax() == 0
    floored = ratio_scores([t.clone() for t in g_f], [t.clone() for t in g_r], 1e-8, retain_floor=0.1)[0]
    assert floored.argmax() == 1 and floored[0] < floored[2]


def test_ratio_prefers_forget_only_gradients():
    g_f = [torch.tensor([1.0, 1.0, 0.0])]
    g_r = [torch.tensor([0.0, 1.0, 1.0])]
    s = ratio_scores([t.clone() for t in g_f], [t.clone() for t in g_r], 1e-8)[0]
    assert s[0] == pytest.approx(1e8) and s[1] == pytest.approx(1.0) and s[2] == 0.0


@pytest.mark.parametrize("per_tensor", [False, True])
def test_mask_has_requested_size_and_file_matches(per_tensor, tiny_lm, simple_task, tmp_path):
    p = 0.05
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=3, warmup_ratio=0.0)
    method = GRIN(p=p, per_tensor=per_tensor)
    trainer = Trainer(method, tiny_lm, simple_task.forget, simple_task.retain, cfg, tmp_path)
    ctx = trainer._build()
    method.setup(ctx)
    sizes = {n: q.numel() for n, q in ctx.base_model.named_parameters()}
    saved = load_mask(tmp_path)
    counts = {n: saved["indices"][n].numel() if n in saved["indices"] else 0 for n in sizes}
    if per_tensor:
        assert counts == {n: max(1, round(p * k)) for n, k in sizes.items()}
    else:
        assert sum(counts.values()) == round(p * sum(sizes.values()))
        assert len({c / sizes[n] for n, c in counts.items()}) > 1  # global: fractions differ by tensor
    for name, idx in ctx.state["grin_mask"].items():
        assert torch.equal(saved["indices"][name], idx.cpu())
    summary = json.loads((tmp_path / "grin_mask.json").read_text())
    assert summary["masked"] == sum(counts.values()) and summary["parameters"] == sum(sizes.values())
    assert sum(summary["layers"].values()) == summary["masked"] == sum(summary["modules"].values())
    assert {n: t["masked"] for n, t in summary["tensors"].items()} == counts


def test_noise_lands_only_inside_the_mask(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=3, warmup_ratio=0.0, seed=3)
    method = GRIN(p=0.1, sigma=0.5)
    trainer = Trainer(method, tiny_lm, simple_task.forget, simple_task.retain, cfg, tmp_path)
    ctx = trainer._build()
    before = _params(tiny_lm)
    method.setup(ctx)
    masks = _masks(tmp_path, before)
    noised = 0
    for name, value in ctx.base_model.named_parameters():
        moved = value.detach() != before[name]
        assert not (moved & ~masks[name]).any(), f"noise outside the mask in {name}"
        noised += int(moved.sum())
        std = float(before[name].std())
        if moved.any():
            assert float((value.detach() - before[name]).abs().max()) < 6 * 0.5 * std
    assert noised > 0.5 * sum(int(m.sum()) for m in masks.values())  # norms (std 0) get no noise; weights do


@pytest.mark.parametrize("weight_decay,sigma", [(0.0, 0.0), (0.1, 0.0), (0.1, 0.1)])
def test_only_masked_weights_change(weight_decay, sigma, tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-2, max_steps=3, batch_size=3, warmup_ratio=0.0, weight_decay=weight_decay)
    out = build_method("grin", {"p": "0.05", "sigma": str(sigma)}).apply(tiny_lm, simple_task, tmp_path, cfg)
    before, after = _params(tiny_lm), _params(out)
    masks = _masks(tmp_path, before)
    changed_in_mask = 0
    for name, value in after.items():
        moved = value != before[name]
        assert not (moved & ~masks[name]).any(), f"{int((moved & ~masks[name]).sum())} unmasked weights moved in {name}"
        changed_in_mask += int(moved.sum())
    assert changed_in_mask > 0.5 * sum(int(m.sum()) for m in masks.values())


def test_same_seed_same_mask_and_noise(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=3, warmup_ratio=0.0)
    a = GRIN(p=0.05).apply(tiny_lm, simple_task, tmp_path / "a", cfg)
    b = GRIN(p=0.05).apply(tiny_lm, simple_task, tmp_path / "b", cfg)
    for name, value in _params(a).items():
        assert torch.equal(value, _params(b)[name])


def _noise_after_setup(lm, task, out_dir, monkeypatch, drop_first: bool, by_position: bool):
    """GRIN's noise (weights after setup minus before), optionally with the first masked weight left out."""
    import unlearnkit.methods.grin as grin

    real = grin.select_top

    def dropping(scores, p, per_tensor):
        indices = real(scores, p, per_tensor)
        if drop_first:
            k = next(i for i, idx in enumerate(indices) if idx.numel() > 1)
            indices[k] = indices[k][1:]
        return indices

    monkeypatch.setattr(grin, "select_top", dropping)
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=3, warmup_ratio=0.0, seed=3)
    method = GRIN(p=0.1, sigma=0.5, noise_by_position=by_position)
    ctx = Trainer(method, lm, task.forget, task.retain, cfg, out_dir)._build()
    before = _params(lm)
    method.setup(ctx)
    return {n: v.detach() - before[n] for n, v in ctx.base_model.named_parameters()}, _masks(out_dir, before)


@pytest.mark.parametrize("by_position", [True, False])
def test_a_weight_leaving_the_mask_changes_no_other_weights_noise(by_position, tiny_lm, simple_task, tmp_path,
                                                                  monkeypatch):
    full, _ = _noise_after_setup(tiny_lm, simple_task, tmp_path / "a", monkeypatch, False, by_position)
    less, mask = _noise_after_setup(tiny_lm, simple_task, tmp_path / "b", monkeypatch, True, by_position)
    same = all(torch.equal(full[n][mask[n]], less[n][mask[n]]) for n in full)
    # by position: every weight still in the mask got the same noise; in mask order every later draw shifts
    assert same is by_position


@pytest.mark.parametrize("loss", ["npo", "grad_diff", "grad_ascent"])
def test_grin_lowers_forget_probability(loss, tiny_target, simple_task, tmp_path):
    before = _forget_prob(tiny_target, simple_task.forget)
    cfg = TrainConfig(lr=1e-2, max_steps=6, batch_size=3, warmup_ratio=0.0)
    out = build_method("grin", {"p": "0.1", "finetune_loss": loss}).apply(tiny_target, simple_task, tmp_path, cfg)
    assert _forget_prob(out, simple_task.forget) < 0.9 * before


@pytest.mark.parametrize("opts,match", [
    ({"p": "0"}, r"p must be in \(0, 1\]"),
    ({"p": "1.5"}, r"p must be in \(0, 1\]"),
    ({"sigma": "-0.1"}, "sigma must be >= 0"),
    ({"eps": "0"}, "eps must be > 0"),
    ({"finetune_loss": "simnpo"}, "finetune_loss must be one of"),
    ({"beta": "0"}, "beta must be > 0"),
    ({"finetune_loss": "grad_diff", "retain_loss": "mse"}, "retain_loss must be one of"),
])
def test_bad_options_fail_at_build(opts, match):
    with pytest.raises(ConfigError, match=match):
        build_method("grin", opts)


def test_lora_is_refused_before_training(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, lora=True, lora_r=4)
    with pytest.raises(ConfigError, match="LoRA"):
        build_method("grin").apply(tiny_lm, simple_task, tmp_path, cfg)
    assert not (tmp_path / "train_log.jsonl").exists() and not (tmp_path / "grin_mask.pt").exists()


def test_report_shows_where_the_mask_fell(tiny_lm, simple_task, tmp_path):
    from unlearnkit.reports.html import collect, write_report

    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=2, seed=0)
    GRIN(p=0.05).apply(tiny_lm, simple_task, tmp_path / "grin", cfg)
    summary = json.loads((tmp_path / "grin" / "grin_mask.json").read_text())
    data = collect([tmp_path / "grin" / "grin_mask.json"])
    assert data.masks["grin"]["layers"] == summary["layers"]
    out = write_report([tmp_path / "grin" / "grin_mask.json"], tmp_path / "r.html", tmp_path / "r.md")
    page = (tmp_path / "r.html").read_text()
    assert "Where the GRIN mask fell: grin" in page and "data:image/png;base64," in page
    top_module = next(iter(summary["modules"]))
    assert top_module in page and top_module in (tmp_path / "r.md").read_text()
    assert out["figures"] >= 1


def test_skip_embeddings_keeps_the_mask_out_of_embeddings_and_head(tiny_lm, simple_task, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=1, batch_size=2, seed=0)
    GRIN(p=0.05, skip_embeddings=True).apply(tiny_lm, simple_task, tmp_path / "skip", cfg)
    GRIN(p=0.05).apply(tiny_lm, simple_task, tmp_path / "all", cfg)
    skip = json.loads((tmp_path / "skip" / "grin_mask.json").read_text())
    full = json.loads((tmp_path / "all" / "grin_mask.json").read_text())
    assert not any("embed_tokens" in n or "lm_head" in n for n in skip["tensors"])
    assert any(("embed_tokens" in n or "lm_head" in n) and t["masked"] for n, t in full["tensors"].items())
    assert skip["masked"] == pytest.approx(0.05 * skip["parameters"], abs=1)

"""Relearning attack: does forgotten knowledge come back after a few steps of fine-tuning?

The forget set is split by the seed: a ``fraction`` (default half) is fine-tuned on
for ``steps`` AdamW steps (answer-only NLL, ``FineTune`` through the shared
``Trainer``, on a copy: the attacked model is unchanged); the *other* part is
measured before and after: keyword accuracy of greedy answers (the leak rate) and
mean normalised answer probability P̃(answer|question). Knowledge that was only
hidden recovers on questions that were never trained on.

A guard is attacked the way a provider's fine-tuning service would serve it: the model under the guard is
fine-tuned (on a copy), its weights are swapped in beneath the unchanged guard for the measurement, and the
originals come back after (as ``quantize`` does). A guard over an endpoint has no local weights: skipped.

Cost: ``steps`` fine-tuning steps of ``batch_size`` examples (the budget, recorded in the result), and a
greedy pass plus a scoring pass over the measured questions before and after. ``relearning`` and
``relearn_disjoint`` are one protocol under two names: when a run asks for both with the same settings the
fine-tune runs once and the second result says so (``same_run_as``).
"""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearnkit.attacks.base import Attack, AttackContext, AttackSkipped, model_family, score_generations
from unlearnkit.data.records import QARecord
from unlearnkit.models.base import weights_model
from unlearnkit.options import option


def split_forget(records: Sequence[QARecord], fraction: float, seed: int) -> tuple[list[QARecord], list[QARecord]]:
    """(train part, held-out part): a seeded shuffle, ``round(fraction·n)`` (at least 1) to train, the rest held out."""
    records = list(records)
    if len(records) < 2:
        raise AttackSkipped("relearning needs at least 2 forget records (some to train on, some to measure)")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    order = list(range(len(records)))
    random.Random(f"relearning:{seed}").shuffle(order)
    k = min(len(records) - 1, max(1, round(fraction * len(records))))
    return [records[i] for i in sorted(order[:k])], [records[i] for i in sorted(order[k:])]


def relearn_target(model):
    """What relearning fine-tunes: the model itself, or for a guard the weight-backed model beneath it."""
    family = model_family(model)
    if family == "weights":
        return model
    under = weights_model(model) if family == "guard" else None
    if under is None or not getattr(under, "editable", False):
        raise AttackSkipped(f"relearning fine-tunes weights; {model.name} has no local weights "
                            f"{'beneath the guard ' if family == 'guard' else ''}(an endpoint)")
    return under


@contextlib.contextmanager
def weights_swapped(target, relearned):
    """Inside the block ``target``'s parameters hold ``relearned``'s values; the originals come back after.
    Writes go through the tensors (not ``.data``) so caches keyed on version counters see them."""
    own = dict(target.model.named_parameters())
    new = dict(relearned.model.named_parameters())
    if own.keys() != new.keys():
        raise RuntimeError("the relearned copy does not have the attacked model's parameters")
    saved = {n: p.detach().clone() for n, p in own.items()}
    with torch.no_grad():
        for n, p in own.items():
            p.copy_(new[n])
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in own.items():
                p.copy_(saved[n])


def recovery_metrics(model, records: Sequence[QARecord], max_new_tokens: int, batch_size: int) -> dict:
    from unlearnkit.evaluation.probability import normalised_prob

    gens = model.generate([r.question for r in records], max_new_tokens=max_new_tokens, batch_size=batch_size)
    scored = score_generations(records, gens)
    scores = model.score([r.question for r in records], [r.answer for r in records], batch_size=batch_size)
    probs = [normalised_prob(s) for s in scores]
    return {"keyword_accuracy": scored["leak_rate"], "rouge_l_recall": scored["rouge_l_recall"],
            "answer_prob": sum(probs) / len(probs), "per_example": scored["per_example"]}


@dataclass
class RelearnBenignOptions:
    steps: int = option(10, "fine-tuning steps", minimum=1)
    lr: float = option(5e-5, "learning rate", minimum=0, exclusive_minimum=True)
    batch_size: int = option(4, "examples per step", minimum=1)


@dataclass
class RelearningOptions(RelearnBenignOptions):
    fraction: float = option(0.5, "share of the forget records trained on (the rest are measured)", minimum=0,
                             maximum=1, exclusive_minimum=True, exclusive_maximum=True)


class Relearning(Attack):
    name = "relearning"
    applies_to = "any"  # weight-backed models, and guards through the weights beneath them (check_applies)
    summary = "fine-tune a few steps on part of the forget set, measure recovery on the rest"
    Options = RelearningOptions

    def __init__(self, fraction: float = 0.5, steps: int = 10, lr: float = 5e-5, batch_size: int = 4,
                 work_dir: str | None = None):
        self.fraction = float(fraction)
        self.steps = int(steps)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.work_dir = work_dir

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        options.setdefault("work_dir", ctx.work_dir)
        return cls(**options)

    def budget(self):
        return {"steps": self.steps, "lr": self.lr, "train_batch_size": self.batch_size, "fraction": self.fraction}

    def check_applies(self, model) -> None:
        relearn_target(model)

    def build(self, records, seed=0):
        """The held-out questions recovery is measured on (``None`` for the records trained on)."""
        _, held = split_forget(records, self.fraction, seed)
        held_ids = {id(r) for r in held}
        return [r.question if id(r) in held_ids else None for r in records]

    def relearn(self, model, train_records: Sequence[QARecord], seed: int):
        from unlearnkit.methods.finetune import FineTune
        from unlearnkit.training.config import TrainConfig
        from unlearnkit.training.loop import Trainer

        cfg = TrainConfig(lr=self.lr, max_steps=self.steps, batch_size=min(self.batch_size, len(train_records)),
                          warmup_ratio=0.0, seed=seed, checkpoint_every=10 ** 9)
        if self.work_dir is not None:
            Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="relearn-", dir=self.work_dir) as tmp:
            return Trainer(FineTune(), model, train_records, None, cfg, tmp, resume=False, progress="relearning").run()

    def measure(self, model, train: Sequence[QARecord], asked: Sequence[QARecord], ctx) -> dict:
        """Leak on ``asked`` before and after fine-tuning a copy of ``model`` on ``train``."""
        before = recovery_metrics(model, asked, ctx.max_new_tokens, ctx.batch_size)
        target = relearn_target(model)
        relearned = self.relearn(target, train, ctx.seed)
        if target is model:
            after = recovery_metrics(relearned, asked, ctx.max_new_tokens, ctx.batch_size)
        else:  # a guard: its own intervention stays, the weights beneath it are the relearned ones
            with weights_swapped(target, relearned):
                after = recovery_metrics(model, asked, ctx.max_new_tokens, ctx.batch_size)
        del relearned
        per_example = [{**a, "generation_before": b["generation"], "keyword_hit_before": b["keyword_hit"]}
                       for a, b in zip(after.pop("per_example"), before.pop("per_example"))]
        return {
            "n": len(asked),
            "n_train": len(train),
            "steps": self.steps,
            "lr": self.lr,
            "leak_rate": after["keyword_accuracy"],
            "rouge_l_recall": after["rouge_l_recall"],
            "before": before,
            "after": after,
            "recovery": {k: after[k] - before[k] for k in before},
            "per_example": per_example,
        }

    def run(self, model, records, ctx):
        key = ("relearn_split", self.fraction, self.steps, self.lr, self.batch_size, ctx.seed,
               tuple((r.question, r.answer) for r in records))
        done = ctx.extra.setdefault("relearn_runs", {})
        if key in done:  # the same protocol, already measured in this run under another name
            name, result = done[key]
            return {**result, "same_run_as": name}
        train, held = split_forget(records, self.fraction, ctx.seed)
        result = self.measure(model, train, held, ctx)
        done[key] = (self.name, result)
        return result


class RelearnDisjoint(Relearning):
    """Retraining on T (Deeb & Roger, arXiv 2410.08827): fine-tune on one half of the forget set, measure on
    the other half, which was never trained on. The protocol of ``relearning``, under the paper's name."""

    name = "relearn_disjoint"
    summary = "fine-tune on one half of the forget set, measure the other half (RTT)"


class RelearnBenign(Relearning):
    """Benign relearning (Hu et al., arXiv 2406.13356): fine-tune on text unrelated to the forget set (the retain
    records: other people, general facts), then ask every forget question. The budget is ``steps``."""

    name = "relearn_benign"
    summary = "fine-tune a few steps on unrelated (retain) data, then ask every forget question"
    Options = RelearnBenignOptions

    def __init__(self, steps: int = 10, lr: float = 5e-5, batch_size: int = 4, work_dir: str | None = None,
                 retain_records: Sequence[QARecord] = ()):
        super().__init__(fraction=0.5, steps=steps, lr=lr, batch_size=batch_size, work_dir=work_dir)
        self.retain_records = list(retain_records)

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        options.setdefault("work_dir", ctx.work_dir)
        options.setdefault("retain_records", ctx.retain_records)
        return cls(**options)

    def build(self, records, seed=0):
        return [r.question for r in records]

    def run(self, model, records, ctx):
        if not self.retain_records:
            raise AttackSkipped("relearn_benign needs unrelated data to fine-tune on (retain records)")
        forget_questions = {r.question for r in records}
        benign = [r for r in self.retain_records if r.question not in forget_questions]
        return self.measure(model, benign, list(records), ctx)

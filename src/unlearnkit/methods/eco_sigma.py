"""ECO's σ: zeroth-order search toward the score of a model that never saw the forget data.

Objective ``f(σ) = |m(σ) − target|`` where ``m(σ)`` is a metric of the guarded model on
the forget set with every forget prompt corrupted at strength σ. Each step::

    g = (m(σ + ε) − m(σ − ε)) / 2ε          # central difference of the metric (σ − ε floored at 0)
    σ ← max(σ − lr·sign(m(σ) − target)·g, σ_min)

i.e. gradient descent on ``f`` (``sign(m − t)·g`` is its derivative; starting above the
target, as a forget metric does, it is plain descent on ``m``), for ``steps`` steps (≈10),
with one safeguard for a metric that responds weakly at the start: the step goes at least as far as the
linear extrapolation to the target, ``σ − (m(σ) − t)/g`` (a Newton step on ``m``), capped at a factor
``growth`` (σ·growth up, σ/growth down). Measured on TOFU with SmolLM2, the answer probability fell
by only 0.013 per unit of σ at σ = 1 while the target lay 0.40 below: plain steps of lr = 10 moved σ
from 1.0 to 1.8 in three steps and stalled, leaving the forget set as known as before;
stopping early once the target is reached (``f(σ) <= tol``). A plain step on ``|m − t|``
does not shrink near the target, so once ``m`` has crossed the target the remaining steps
narrow the bracket instead (secant, bisection when the secant is not inside it). The search
also stops when it stalls: ``f`` shrank by less than ``tol`` over the last ``stall_steps``
gradient steps (a metric that barely moves with σ would otherwise spend every step). The σ
returned is the best evaluated point (smallest ``f``). Metrics (``SIGMA_METRICS``):

* ``truth_ratio``: TOFU's forget truth-ratio score mean(min(R, 1/R)) over the forget
  records (needs paraphrased and perturbed answers);
* ``prob``: mean normalised answer probability P̃(a|q) = exp(−mean token NLL).

The default target is the same metric of the *bare* model on the holdout split: people
or facts the model never saw, i.e. what the retain model would score on the forget set
(the paper's target is the retain model's own value; pass ``sigma_target`` to use it).

``search_sigma`` runs the search for an ECO guard on a task's forget set, with the guard's options.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from unlearnkit.evaluation.truth_ratio import forget_truth_ratio_score, truth_ratio

SIGMA_METRICS = ("truth_ratio", "prob")
SIGMA_FILE = "eco_sigma.json"


@dataclass
class SigmaSearch:
    steps: int = 10
    lr: float = 1.0
    eps: float = 0.5
    sigma_min: float = 0.0
    tol: float = 0.01
    stall_steps: int = 3
    growth: float = 8.0  # the most one step multiplies (or divides) σ by when extrapolating; 1 = plain steps


@dataclass
class SearchResult:
    sigma: float
    target: float
    metric: str
    reached: bool
    evaluations: int
    seconds: float
    log: list[dict] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def zeroth_order_search(metric: Callable[[float], float], target: float, sigma0: float,
                        cfg: SigmaSearch | None = None, name: str = "metric") -> SearchResult:
    """Minimise ``|metric(σ) − target|`` by central differences (see the module docstring)."""
    cfg = cfg or SigmaSearch()
    t0 = time.perf_counter()
    cache: dict[float, float] = {}

    def m(sigma: float) -> float:
        sigma = float(max(sigma, 0.0))
        if sigma not in cache:
            cache[sigma] = float(metric(sigma))
        return cache[sigma]

    log: list[dict] = []
    sigma = float(max(sigma0, cfg.sigma_min))
    best = (math.inf, sigma)
    reached = False
    previous: tuple[float, float] | None = None  # (σ, m) of the last gradient step
    bracket: tuple[tuple[float, float], tuple[float, float]] | None = None  # points on both sides of the target
    note = ""

    def consider(s: float, v: float) -> None:
        nonlocal best
        if abs(v - target) < best[0]:
            best = (abs(v - target), s)

    for step in range(cfg.steps + 1):
        value = m(sigma)
        gap = abs(value - target)
        consider(sigma, value)
        entry = {"step": step, "sigma": sigma, "metric": value, "gap": gap}
        log.append(entry)
        if gap <= cfg.tol:
            reached = True
            break
        if step == cfg.steps:
            break
        if bracket is None and cfg.stall_steps and step >= cfg.stall_steps and \
                log[step - cfg.stall_steps]["gap"] - gap < cfg.tol:
            note = f"stalled: the gap shrank by less than {cfg.tol} in {cfg.stall_steps} steps"
            break
        if bracket is None and previous is not None and (previous[1] - target) * (value - target) < 0:
            bracket = (previous, (sigma, value))
        elif bracket is not None:
            (s0, v0), (s1, v1) = bracket
            bracket = ((s0, v0), (sigma, value)) if (v0 - target) * (value - target) < 0 else ((s1, v1), (sigma, value))
        if bracket is not None:  # crossed the target: narrow the bracket
            (s0, v0), (s1, v1) = bracket
            lo_s, hi_s = min(s0, s1), max(s0, s1)
            new_sigma = s0 + (target - v0) * (s1 - s0) / (v1 - v0) if v1 != v0 else (s0 + s1) / 2
            if not lo_s < new_sigma < hi_s:
                new_sigma = (lo_s + hi_s) / 2
            entry.update(bracket=[lo_s, hi_s], next_sigma=new_sigma)
            sigma = new_sigma
            continue
        lo = max(sigma - cfg.eps, 0.0)
        up, down = m(sigma + cfg.eps), m(lo)
        consider(sigma + cfg.eps, up)
        consider(lo, down)
        g = (up - down) / (sigma + cfg.eps - lo)
        direction = 1.0 if value > target else -1.0
        new_sigma = max(sigma - cfg.lr * direction * g, cfg.sigma_min)
        if g != 0 and cfg.growth > 1 and sigma > 0:
            newton = sigma - (value - target) / g
            capped = min(max(newton, sigma / cfg.growth), sigma * cfg.growth)
            if (capped - sigma) * (new_sigma - sigma) > 0 and abs(capped - sigma) > abs(new_sigma - sigma):
                new_sigma = max(capped, cfg.sigma_min)
                entry.update(extrapolated=True)
        entry.update(metric_plus=up, metric_minus=down, grad=g, next_sigma=new_sigma)
        if new_sigma == sigma:  # zero gradient (flat metric) or clamped at σ_min: nothing more to learn
            break
        previous = (sigma, value)
        sigma = new_sigma
    return SearchResult(sigma=best[1], target=float(target), metric=name, reached=reached,
                        evaluations=len(cache), seconds=time.perf_counter() - t0, log=log, note=note)


def has_truth_ratio_fields(records) -> bool:
    return bool(records) and all(r.paraphrased_answer and r.perturbed_answers for r in records)


def metric_of_scores(metric: str, records, score_fn) -> float:
    """``metric`` of ``records`` with ``score_fn(prompts, answers) -> list[AnswerScores]``."""
    if metric == "prob":
        scores = score_fn([r.question for r in records], [r.answer for r in records])
        return float(np.mean([s.prob for s in scores]))
    if metric == "truth_ratio":
        prompts, answers, spans = [], [], []
        for r in records:
            start = len(answers)
            for a in (r.paraphrased_answer, *r.perturbed_answers):
                prompts.append(r.question)
                answers.append(a)
            spans.append((start, len(answers)))
        scores = score_fn(prompts, answers)
        ratios = [truth_ratio(scores[a], scores[a + 1:b]) for a, b in spans]
        return forget_truth_ratio_score(ratios)
    raise ValueError(f"unknown σ metric '{metric}': choose one of {', '.join(SIGMA_METRICS)}")


def capped_sample(records, limit: int, seed: int) -> list:
    """At most ``limit`` records (0 = all), a seeded sample in the original order."""
    records = list(records)
    if not limit or len(records) <= limit:
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def search_sigma(guard, task, batch_size: int = 16) -> dict:
    """Run the zeroth-order σ search for an ``ECOGuard`` on ``task``'s forget set (every forget prompt corrupted).

    Each evaluation scores the forget sample under corruption, so the sample is capped
    (``sigma_records``): the search costs the same for 1 or 1000 targets."""
    o = guard.options
    metric = o.sigma_metric
    forget_eval = list(getattr(task, "forget_eval", None) or task.forget)  # a bare forget/retain task has no eval split
    forget = forget_eval if has_truth_ratio_fields(forget_eval) else list(task.forget)
    holdout = capped_sample(task.holdout or [], o.sigma_records, o.seed)
    note = ""
    if metric == "truth_ratio" and not (has_truth_ratio_fields(forget) and
                                        (o.sigma_target is not None or has_truth_ratio_fields(holdout))):
        metric, note = "prob", "truth_ratio needs paraphrased and perturbed answers; used prob"
    if metric == "prob":
        forget = list(task.forget)
    forget = capped_sample(forget, o.sigma_records, o.seed)
    bare = metric_of_scores(metric, forget, lambda p, a: guard.base.score(p, a, batch_size=batch_size))
    if o.sigma_target is not None:
        target, source = float(o.sigma_target), "option sigma_target"
    elif holdout:
        target = metric_of_scores(metric, holdout, lambda p, a: guard.base.score(p, a, batch_size=batch_size))
        source = "bare model on the holdout split"
    else:
        return {"sigma": guard.sigma, "metric": metric, "target": None, "reached": False, "log": [],
                "note": "no holdout split and no sigma_target: kept the initial sigma"}
    if metric == "prob" and bare <= target + o.sigma_tol:
        # corruption only lowers the probability: there is nothing for σ to reach
        return {"sigma": guard.sigma, "metric": metric, "target": target, "reached": False, "log": [],
                "bare_forget_metric": bare, "target_source": source, "records": len(forget),
                "note": "the forget records already score at or below the target without corruption (the model "
                        "does not know them): kept the initial sigma"}

    def m(sigma: float) -> float:
        return metric_of_scores(metric, forget, lambda p, a: guard.score_corrupted(p, a, sigma=sigma,
                                                                                  batch_size=batch_size))

    cfg = SigmaSearch(steps=o.sigma_steps, lr=o.sigma_lr, eps=o.sigma_eps, sigma_min=o.sigma_min, tol=o.sigma_tol)
    result = zeroth_order_search(m, target, o.sigma, cfg, name=metric)
    out = result.to_json()
    out.update(bare_forget_metric=bare, target_source=source, note="; ".join(x for x in (note, result.note) if x),
               records=len(forget))
    return out

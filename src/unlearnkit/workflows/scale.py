"""The scale sweep: unlearn 1, 10, 100, 1000 targets and measure forgetting, utility and cost.

Targets are people from the built-in benchmark generator. At each size the sweep
records

* forgetting: leak rate (keyword accuracy) and ROUGE-L recall on a seeded sample of
  the targets' questions (and, before unlearning, on the same questions, so a
  reader sees whether there was anything to forget);
* utility: keyword accuracy and ROUGE-L on retain people's questions, and the
  over-refusal rate: retain queries the original model answered (keywords hit)
  that now miss, or that now get a refusal;
* cost: wall time to unlearn, latency per query, tokens per query (prompt +
  generated, summed over every call the query makes to the underlying model) and
  model calls per query — over all queries, and apart for the target queries
  (``*_forget``) and the retain queries (``*_retain``). The mix changes with the size (one
  target has 4 questions, ten have 24), and a guard spends far more on a target query
  than on a clean one, so the per-kind figures are the ones to compare across sizes;
  the retain queries are the same questions at every size.

``sequential=False``: each size is a fresh run from the original model.
``sequential=True`` (continual unlearning): the requests arrive one after another
(1, then 9 more, then 90 more…), each applied to the previous result (guards:
``add_targets``; weight methods: the method again on the previous model with only
the new targets), and the earlier targets' leak rate is tracked at every stage.

The bookkeeping (stages, samples, per-stage rows) is pure functions that the tests
drive with a fake method and model. The people come from ``data.scale_targets``,
the over-refusal metric from ``evaluation.refusal``, and the calls and tokens from
``models.call_counting`` (an observer of the bottom model's calls).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.data.records import QARecord
from unlearnkit.data.scale_targets import builtin_scale_data
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.refusal import over_refusal
from unlearnkit.models.call_counting import CallCounter, count_calls

DEFAULT_SIZES = (1, 10, 100, 1000)


@dataclass(frozen=True)
class Stage:
    """One unlearning request of the sweep."""

    index: int
    n_targets: int  # targets forgotten after this stage
    new: tuple[str, ...]  # targets this request adds
    targets: tuple[str, ...]  # every target forgotten after this stage
    earlier: tuple[str, ...]  # targets of earlier requests still expected forgotten (sequential)
    from_scratch: bool  # applied to the original model (else to the previous stage's result)


def check_sizes(sizes: Sequence[int], available: int | None = None) -> tuple[int, ...]:
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise ConfigError("the scale sweep needs at least one size, e.g. --sizes 1,10,100,1000")
    if any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ConfigError(f"sizes must be positive and strictly increasing, got {list(sizes)}")
    if available is not None and sizes[-1] > available:
        raise ConfigError(f"the largest size {sizes[-1]} exceeds the {available} target people available")
    return sizes


def plan_stages(people: Sequence[str], sizes: Sequence[int], sequential: bool) -> list[Stage]:
    """The requests of the sweep. Sets are nested: size k forgets the first k people."""
    sizes = check_sizes(sizes, len(people))
    stages = []
    prev = 0
    for i, k in enumerate(sizes):
        if sequential:
            new, earlier, scratch = tuple(people[prev:k]), tuple(people[:prev]), i == 0
        else:
            new, earlier, scratch = tuple(people[:k]), (), True
        stages.append(Stage(index=i, n_targets=k, new=new, targets=tuple(people[:k]), earlier=earlier,
                            from_scratch=scratch))
        prev = k
    return stages


def sample_records(by_person: Mapping[str, Sequence[QARecord]], people: Sequence[str], n: int,
                   seed: int, salt: str = "") -> list[QARecord]:
    """Up to ``n`` of the people's records: one per person first (people in seeded order), then more."""
    if n <= 0 or not people:
        return []
    rng = random.Random(f"scale:{seed}:{salt}")
    order = list(people)
    rng.shuffle(order)
    pools = {p: rng.sample(list(by_person[p]), len(by_person[p])) for p in order}
    out: list[QARecord] = []
    depth = 0
    while len(out) < n and any(depth < len(pools[p]) for p in order):
        for p in order:
            if depth < len(pools[p]):
                out.append(pools[p][depth])
                if len(out) == n:
                    break
        depth += 1
    return out


# -- the sweep --------------------------------------------------------------------------------
@dataclass
class ScaleConfig:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    sequential: bool = False
    facts_per_person: int = 2
    n_retain_people: int = 20
    eval_forget: int = 40  # forget questions evaluated per stage (seeded sample over the targets)
    eval_earlier: int = 40  # questions about earlier targets (sequential)
    eval_retain: int = 40
    max_new_tokens: int = 48
    batch_size: int = 8
    measure_before: bool = True
    seed: int = 0


@dataclass
class ScaleTask:
    """What ``method.apply`` needs: forget and retain records."""

    forget: list[QARecord]
    retain: list[QARecord]
    holdout: list[QARecord] = field(default_factory=list)
    root: str = "scale"


def answer_and_score(model, records: Sequence[QARecord], cfg: ScaleConfig) -> dict[str, Any]:
    from unlearnkit.attacks.base import score_generations

    if not records:
        return {"n": 0, "leak_rate": None, "rouge_l_recall": None, "per_example": []}
    gens = model.generate([r.question for r in records], max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    return score_generations(records, gens)


def apply_request(method, current, stage: Stage, by_person: Mapping[str, Sequence[QARecord]],
                  retain: Sequence[QARecord], out_dir: Path, train, holdout: Sequence[QARecord] = ()) -> Any:
    """Unlearn this stage's request: fresh, or on top of the previous result (guards add targets).

    ``holdout``: questions about people the model never saw (ECO sets its σ from them)."""
    from unlearnkit.data.targets import targets_from_records

    forget = [r for p in stage.new for r in by_person[p]]
    if not stage.from_scratch and hasattr(current, "add_targets") and getattr(method, "family", "") == "guard":
        current.add_targets(targets_from_records(forget))
        return current
    return method.apply(current, ScaleTask(forget=forget, retain=list(retain), holdout=list(holdout)), out_dir, train)


def run_scale(model, method, by_person: Mapping[str, Sequence[QARecord]], retain: Sequence[QARecord],
              config: ScaleConfig | None = None, out_dir: str | Path = "runs/scale", train=None,
              method_name: str | None = None, on_stage: Callable[[dict], None] | None = None,
              holdout: Sequence[QARecord] = ()) -> dict[str, Any]:
    """Run the sweep. ``by_person``: target person -> records, in the order targets are added;
    ``retain``: records about other people (kept, and used to measure utility); ``holdout``:
    records about people neither forgotten nor known (given to each request as its holdout split).

    Returns ``{"kind": "scale", "method", "sequential", "config", "stages": [...]}``; each stage
    has ``n_targets``, ``n_new_targets``, ``unlearn_seconds``, ``latency_s``,
    ``tokens_per_query``, ``calls_per_query``, ``forget_leak_rate`` (and ``_before``),
    ``forget_rouge``, ``earlier_leak_rate`` (sequential), ``retain_keyword_accuracy``,
    ``retain_rouge``, ``over_refusal``.
    """
    cfg = config or ScaleConfig()
    out_dir = Path(out_dir)
    people = list(by_person)
    stages = plan_stages(people, cfg.sizes, cfg.sequential)
    if train is None:
        from unlearnkit.training.config import TrainConfig

        train = TrainConfig(lr=2e-5, epochs=5, batch_size=4, warmup_ratio=0.0, seed=cfg.seed)
    retain_eval = sample_records({"_": list(retain)}, ["_"], cfg.eval_retain, cfg.seed, "retain")
    base_retain = answer_and_score(model, retain_eval, cfg)
    base_hits = [r["keyword_hit"] for r in base_retain["per_example"]]
    results: list[dict[str, Any]] = []
    current = model
    from tqdm.auto import tqdm

    name = method_name or getattr(method, "name", type(method).__name__)
    for stage in tqdm(stages, desc=f"scale {name}", unit="request"):
        forget_eval = sample_records(by_person, stage.targets if not cfg.sequential else stage.new,
                                     cfg.eval_forget, cfg.seed, f"forget{stage.index}")
        earlier_eval = sample_records(by_person, stage.earlier, cfg.eval_earlier, cfg.seed, f"earlier{stage.index}")
        before = answer_and_score(model, forget_eval, cfg) if cfg.measure_before else None
        start = model if stage.from_scratch else current
        t0 = time.perf_counter()
        current = apply_request(method, start, stage, by_person, retain, out_dir / f"stage{stage.index}", train,
                                holdout)
        unlearn_seconds = time.perf_counter() - t0
        costs: dict[str, tuple[float, int, CallCounter]] = {}
        scored = {}
        for kind, recs in (("forget", forget_eval), ("earlier", earlier_eval), ("retain", retain_eval)):
            with count_calls(current) as counter:
                t1 = time.perf_counter()
                scored[kind] = answer_and_score(current, recs, cfg)
                costs[kind] = (time.perf_counter() - t1, len(recs), counter)
        row = stage_row(stage, unlearn_seconds, costs, scored["forget"], scored["earlier"], scored["retain"],
                        base_hits, before)
        results.append(row)
        if on_stage is not None:
            on_stage(row)
    return {
        "kind": "scale",
        "method": name,
        "sequential": cfg.sequential,
        "config": asdict(cfg),
        "train": asdict(train) if hasattr(train, "__dataclass_fields__") else None,
        "model": model.describe(),
        "n_people": len(people),
        "retain_keyword_accuracy_before": base_retain["leak_rate"],
        "stages": results,
    }


def run_builtin_scale(model, method, config: ScaleConfig | None = None, out_dir: str | Path = "runs/scale",
                      task=None, train=None, method_name: str | None = None,
                      on_stage: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """The whole sweep on built-in generator people (see ``builtin_scale_data``); writes ``out_dir/scale.json``."""
    from unlearnkit.io import write_json_atomic

    cfg = config or ScaleConfig()
    check_sizes(cfg.sizes)
    by_person, retain, holdout = builtin_scale_data(max(cfg.sizes), task, cfg.facts_per_person,
                                                    cfg.n_retain_people, cfg.seed)
    result = run_scale(model, method, by_person, retain, cfg, out_dir, train=train, method_name=method_name,
                       on_stage=on_stage, holdout=holdout)
    result["targets"] = list(by_person)
    write_json_atomic(Path(out_dir) / "scale.json", result)
    return result


def per_query(costs: Mapping[str, tuple[float, int, CallCounter]], kinds: Sequence[str]) -> dict[str, float | None]:
    """Latency, tokens and calls per query over the query kinds ``kinds`` (None without queries)."""
    chosen = [costs[k] for k in kinds if k in costs]
    n = sum(queries for _, queries, _ in chosen)
    if not n:
        return {"latency_s": None, "tokens_per_query": None, "calls_per_query": None}
    return {"latency_s": sum(seconds for seconds, _, _ in chosen) / n,
            "tokens_per_query": sum(c.tokens for _, _, c in chosen) / n,
            "calls_per_query": sum(c.calls for _, _, c in chosen) / n}


def stage_row(stage: Stage, unlearn_seconds: float, costs: Mapping[str, tuple[float, int, CallCounter]],
              forget: dict, earlier: dict, kept: dict, base_hits: Sequence[bool], before: dict | None) -> dict:
    """One stage's numbers (pure: the scored answers and, per query kind, (seconds, queries, counter) in)."""
    hits = [r["keyword_hit"] for r in kept["per_example"]]
    gens = [r["generation"] for r in kept["per_example"]]
    overall = per_query(costs, ("forget", "earlier", "retain"))
    targets = per_query(costs, ("forget", "earlier"))
    clean = per_query(costs, ("retain",))
    return {
        "stage": stage.index,
        "n_targets": stage.n_targets,
        "n_new_targets": len(stage.new),
        "unlearn_seconds": unlearn_seconds,
        **overall,
        **{f"{k}_forget": v for k, v in targets.items()},
        **{f"{k}_retain": v for k, v in clean.items()},
        "forget_leak_rate_before": before["leak_rate"] if before else None,
        "forget_leak_rate": forget["leak_rate"],
        "forget_rouge": forget["rouge_l_recall"],
        "earlier_leak_rate": earlier["leak_rate"],
        "retain_keyword_accuracy": kept["leak_rate"],
        "retain_rouge": kept["rouge_l_recall"],
        "over_refusal": over_refusal(base_hits, hits, gens),
        "n_forget_eval": forget["n"],
        "n_earlier_eval": earlier["n"],
        "n_retain_eval": kept["n"],
        "per_example": {"forget": forget["per_example"], "earlier": earlier["per_example"],
                        "retain": kept["per_example"]},
    }

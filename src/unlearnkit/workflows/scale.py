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

The bookkeeping (stages, samples, metrics, call counting) is pure functions that
the tests drive with a fake method and model.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.data.records import QARecord
from unlearnkit.errors import ConfigError
from unlearnkit.models.base import leaf

DEFAULT_SIZES = (1, 10, 100, 1000)

REFUSAL = re.compile(r"\b(i\s+(?:can(?:no|')?t|am\s+(?:not\s+able|unable)|won'?t)|i'm\s+(?:sorry|unable|not able)|"
                     r"(?:cannot|can't|unable to)\s+(?:help|assist|provide|share|discuss|answer)|"
                     r"not\s+able\s+to\s+(?:help|answer|provide))", re.IGNORECASE)


def is_refusal(text: str) -> bool:
    return bool(REFUSAL.search(text or ""))


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


def over_refusal(base_hits: Sequence[bool], hits: Sequence[bool], generations: Sequence[str]) -> float | None:
    """Fraction of retain queries degraded: the original model hit the keywords and now misses, or a refusal."""
    if not generations:
        return None
    bad = [(b and not h) or is_refusal(g) for b, h, g in zip(base_hits, hits, generations, strict=True)]
    return sum(bad) / len(bad)


# -- counting model calls and tokens ---------------------------------------------------------
@dataclass
class CallCounter:
    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


def _token_counter(lm) -> tuple[Callable[[Any, bool], int], Callable[[str], int]]:
    return lm.prompt_tokens, lm.count_tokens


@contextmanager
def count_calls(model):
    """Count the calls and tokens reaching the underlying model while the block runs.

    The bottom model's ``generate`` and ``score`` are wrapped on the instance and
    restored afterwards. Backends a guard keeps elsewhere (e.g. a remote judge) are
    not counted.
    """
    lm = leaf(model)
    counter = CallCounter()
    count_prompt, count_text = _token_counter(lm)
    orig_generate, orig_score = lm.generate, lm.score

    def generate(prompts, *args, chat=True, **kwargs):
        out = orig_generate(prompts, *args, chat=chat, **kwargs)
        counter.calls += len(prompts)
        counter.prompt_tokens += sum(count_prompt(p, chat) for p in prompts)
        counter.output_tokens += sum(count_text(o) for o in out)
        return out

    def score(prompts, answers, *args, chat=True, **kwargs):
        out = orig_score(prompts, answers, *args, chat=chat, **kwargs)
        counter.calls += len(prompts)
        counter.prompt_tokens += sum(count_prompt(p, chat) + count_text(a) for p, a in zip(prompts, answers))
        return out

    had = {k: k in vars(lm) for k in ("generate", "score")}
    lm.generate, lm.score = generate, score
    try:
        yield counter
    finally:
        for k, orig in (("generate", orig_generate), ("score", orig_score)):
            if had[k]:
                setattr(lm, k, orig)
            else:
                delattr(lm, k)


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


def group_by_subject(records: Sequence[QARecord]) -> dict[str, list[QARecord]]:
    out: dict[str, list[QARecord]] = {}
    for r in records:
        out.setdefault(r.subject or r.question, []).append(r)
    return out


def builtin_scale_data(n_targets: int, task=None, facts_per_person: int = 2, n_retain_people: int = 20,
                       seed: int = 0, work_dir: str | Path | None = None
                       ) -> tuple[dict[str, list[QARecord]], list[QARecord], list[QARecord]]:
    """Targets, retain and holdout records for the sweep from the built-in generator.

    With ``task`` (the benchmark the model was fine-tuned on), its forget people come first
    (the model knows them, so small sizes measure real forgetting) and its retain records
    are the retain set (known facts that must survive); generated people fill the
    remaining targets. Without ``task`` everything is generated. Holdout: the task's holdout
    split (people the model never saw), else the generator's holdout people.
    """
    import tempfile

    from unlearnkit.data import generate_benchmark, load_task

    known = group_by_subject(task.forget) if task is not None else {}
    retain = list(task.retain) if task is not None else []
    holdout = list(task.holdout or []) if task is not None else []
    extra = max(0, n_targets - len(known))
    n_retain = 0 if task is not None else n_retain_people
    root = Path(tempfile.mkdtemp(prefix="unlearnkit-scale-", dir=work_dir))
    generated: dict[str, list[QARecord]] = {}
    taken = {n.lower() for n in known} | {r.subject.lower() for r in retain if r.subject}
    if extra or n_retain:
        # generated people may share a name with someone the model already knows: make that many more
        spare = len(taken)
        generate_benchmark(root, n_people=extra + spare + max(n_retain, 1), n_forget=extra + spare,
                           n_holdout=2, facts_per_person=facts_per_person, seed=seed + 1000, n_general=2)
        gen_task = load_task(root)
        generated = group_by_subject(gen_task.forget)
        if task is None:
            retain, holdout = list(gen_task.retain), list(gen_task.holdout or [])
            taken |= {r.subject.lower() for r in retain + holdout if r.subject}
    by_person = dict(known)
    for name, recs in generated.items():
        if len(by_person) >= n_targets:
            break
        if name.lower() not in taken:
            by_person[name] = recs
    if len(by_person) < n_targets:
        raise ConfigError(f"the generator gave only {len(by_person)} distinct people for {n_targets} targets")
    return dict(list(by_person.items())[:n_targets]), retain, holdout


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

"""The TOFU benchmark's target and retain models: fine-tuned once, cached, evaluated on both suites.

The cache directory is keyed by the base model, the TOFU layout and the fine-tuning configuration;
inside it ``finetune`` reuses a model whose ``finetune.json`` matches, and ``cached_evaluate`` reuses an
evaluation of the same weights, task and configuration. An interrupted fine-tune resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from unlearnkit.data.task import TaskData
from unlearnkit.data.tofu_benchmark import TofuBenchmark, eval_subset, load_tofu_benchmark
from unlearnkit.evaluation.tofu import EvalConfig
from unlearnkit.models.loading import load_model, set_chat_format
from unlearnkit.paths import cache_root
from unlearnkit.training.config import TrainConfig
from unlearnkit.workflows.evaluate import cached_evaluate
from unlearnkit.workflows.finetune import finetune, records_digest

# SmolLM2-135M learns TOFU's answers in 2 epochs at 2e-4 (batch 8); TOFU's 5 epochs at 1e-5 are for 7B models
# and would take this CPU 2 hours per model.
TOFU_FINETUNE = TrainConfig(lr=2e-4, epochs=2, batch_size=8, warmup_ratio=0.1, weight_decay=0.01)
EMBEDDED = {None, "", "smollm2", "default", "embedded"}


@dataclass
class TofuSetup:
    """Where the data is and how the target/retain models are made and measured."""

    data: str
    forget: str = "forget01"
    layout: str = "authors"
    model: str | None = None  # None: the embedded SmolLM2; else any load_model spec
    finetune: TrainConfig = field(default_factory=lambda: TOFU_FINETUNE)
    eval: EvalConfig = field(default_factory=EvalConfig)
    select_retain: int | None = 40  # retain_perturbed questions in the selection suite (spread over the authors)
    select_general: int | None = 20  # real_authors / world_facts questions in the selection suite
    final_retain: int | None = None  # None: the full suite for the chosen settings
    final_general: int | None = None

    def key(self, data_digest: str) -> str:
        """The cache directory's name: base model, what the models learn (by content, not path), fine-tuning."""
        blob = json.dumps([str(self.model), data_digest, self.forget, self.layout, asdict(self.finetune)],
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class TofuModels:
    bench: TofuBenchmark
    cache: Path
    target: object
    retain: object | None
    select_task: TaskData
    final_task: TaskData
    evals: dict[str, dict] = field(default_factory=dict)  # "target_select", "retain_final", ...
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds (0 when cached)

    @property
    def target_dir(self) -> Path:
        return self.cache / "target" / "model"


def _timed(seconds: dict, phase: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds[phase] = time.perf_counter() - t0
    return out


def prepare_tofu_models(setup: TofuSetup, console: Console | None = None, keep_retain: bool = False) -> TofuModels:
    """Load TOFU, fine-tune (or reuse) the target and retain models, evaluate both on the selection suite
    (``evaluate_references(models, setup, "final")`` adds the final suite)."""
    console = console or Console()
    seconds: dict[str, float] = {}
    bench = _timed(seconds, "data", load_tofu_benchmark, setup.data, setup.forget, setup.layout)
    d = bench.describe()
    console.print(f"[bold]TOFU[/bold] {setup.data} ({d['layout']} layout): forget {d['forget_split']} "
                  f"({', '.join(d['forget_authors'])}); target learns {d['target_train']} pairs, retain model "
                  f"{d['retain_train']}")
    base = set_chat_format(load_model(base_spec(setup)))
    cache = models_cache(setup, bench)
    target, info, cached = _timed(seconds, "finetune_target", finetune_model, setup, bench, "target", base)
    if cached:
        seconds["finetune_target"] = 0.0
    retain, info, cached = _timed(seconds, "finetune_retain", finetune_model, setup, bench, "retain", base)
    if cached:
        seconds["finetune_retain"] = 0.0
    del base
    select_task = eval_subset(bench.task, setup.select_retain, setup.select_general)
    final_task = eval_subset(bench.task, setup.final_retain, setup.final_general)
    models = TofuModels(bench, cache, target, retain, select_task, final_task, {}, seconds)
    evaluate_references(models, setup, "select")
    if not keep_retain:
        models.retain = None
    return models


def base_spec(setup: TofuSetup) -> str | None:
    """The base model's ``load_model`` spec (None: the embedded SmolLM2)."""
    return None if setup.model in EMBEDDED else str(setup.model)


def models_cache(setup: TofuSetup, bench: TofuBenchmark) -> Path:
    """The directory of this setup's target and retain models, runs and evaluations."""
    return cache_root() / "tofu" / setup.key(records_digest(bench.target_train) + records_digest(bench.retain_train))


def finetune_model(setup: TofuSetup, bench: TofuBenchmark, which: str, base):
    """The target ("target": forget + retain authors) or the retain model ("retain"), fine-tuned from ``base``
    or reused from the cache: (model, info, cached)."""
    records = bench.target_train if which == "target" else bench.retain_train
    return finetune(base, records, models_cache(setup, bench) / which, setup.finetune, str(base_spec(setup)),
                    label=which)


def finetuned_models(setup: TofuSetup) -> TofuModels:
    """The models ``prepare_tofu_models`` made, loaded from the cache without evaluating anything: what a
    worker process of the benchmark starts from (``workflows/tofu_jobs.py``)."""
    bench = load_tofu_benchmark(setup.data, setup.forget, setup.layout)
    cache = models_cache(setup, bench)
    return TofuModels(bench, cache, load_model(cache / "target" / "model"), None,
                      eval_subset(bench.task, setup.select_retain, setup.select_general),
                      eval_subset(bench.task, setup.final_retain, setup.final_general))


def evaluate_references(models: TofuModels, setup: TofuSetup, suite: str) -> None:
    """The retain and target models on one suite ("select" or "final"), cached; the retain model is loaded
    again from its directory when it was dropped."""
    task = models.select_task if suite == "select" else models.final_task
    retain = models.retain if models.retain is not None else load_model(models.cache / "retain" / "model")
    t0 = time.perf_counter()
    path = models.cache / "retain" / f"eval_{suite}.json"
    r = cached_evaluate(retain, task, path, setup.eval)
    r = cached_evaluate(retain, task, path, setup.eval, reference=r)
    t = cached_evaluate(models.target, task, models.cache / "target" / f"eval_{suite}.json", setup.eval, reference=r)
    models.evals[f"retain_{suite}"], models.evals[f"target_{suite}"] = r, t
    models.seconds[f"eval_references_{suite}"] = time.perf_counter() - t0

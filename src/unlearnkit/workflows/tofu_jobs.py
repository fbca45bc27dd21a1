"""The TOFU benchmark's jobs, as its worker processes run them (``workflows/jobs.py``).

Each job fills the cache the benchmark reads back — a fine-tuned model, a sweep run and its selection
evaluation, a final evaluation — and returns its own wall seconds. ``schedule`` runs them all, longest first,
and submits a method's final evaluation as soon as its sweep is done, so no core waits for a phase to end.
Evaluations are written without the reference-dependent metrics, which the benchmark adds from the
per-example values when it assembles the results.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from unlearnkit.data.tofu_benchmark import load_tofu_benchmark
from unlearnkit.models.loading import load_model, set_chat_format
from unlearnkit.workflows.evaluate import cached_evaluate
from unlearnkit.workflows.jobs import JobPool
from unlearnkit.workflows.tofu_models import TofuModels, TofuSetup, base_spec, finetune_model, finetuned_models

_MODELS: dict[str, TofuModels] = {}  # this worker's cached models, loaded at its first job
# Wall time of one job relative to a weight-editing run (measured on SmolLM2, one thread): the longest start
# first, so the last job to end is a short one.
COST = {"alu": 8.0, "grin": 2.0, "prompting": 1.5, "eco": 1.5}


def _models(setup: TofuSetup) -> TofuModels:
    key = json.dumps(asdict(setup), sort_keys=True, default=str)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = finetuned_models(setup)
    return _MODELS[key]


def finetune_job(setup: TofuSetup, which: str) -> float:
    bench = load_tofu_benchmark(setup.data, setup.forget, setup.layout)
    t0 = time.perf_counter()
    _, _, cached = finetune_model(setup, bench, which, set_chat_format(load_model(base_spec(setup))))
    return 0.0 if cached else time.perf_counter() - t0


def reference_job(setup: TofuSetup, which: str, suite: str) -> float:
    """The target or retain model on the selection ("select") or final suite."""
    t0 = time.perf_counter()
    models = _models(setup)
    model = models.target if which == "target" else load_model(models.cache / "retain" / "model")
    cached_evaluate(model, models.select_task if suite == "select" else models.final_task,
                    models.cache / which / f"eval_{suite}.json", setup.eval)
    return time.perf_counter() - t0


def sweep_job(cfg, name: str, cand: dict) -> float:
    """One setting of a method's sweep: unlearn (or reuse the run), then the selection suite."""
    from unlearnkit.workflows.tofu import _label, _run

    t0 = time.perf_counter()
    models = _models(cfg.setup)
    run_dir = models.cache / "runs" / name / _label(cand)
    model, _ = _run(name, cand, models, cfg, run_dir, Console(quiet=True))
    cached_evaluate(model, models.select_task, run_dir / "eval_select.json", cfg.setup.eval)
    return time.perf_counter() - t0


def final_job(setup: TofuSetup, run_dir: str) -> float:
    """A chosen run (edited model or guard) on the final suite."""
    t0 = time.perf_counter()
    models = _models(setup)
    cached_evaluate(load_model(Path(run_dir)), models.final_task, Path(run_dir) / "eval_final.json", setup.eval)
    return time.perf_counter() - t0


def prepare_models(setup: TofuSetup, pool: JobPool, console: Console) -> dict[str, float]:
    """Fine-tune the target and retain models side by side, then their selection evaluations."""
    for which in ("target", "retain"):
        pool.submit(("finetune", which), finetune_job, setup, which)
    seconds = {f"finetune_{key[1]}": took for key, took in _completed(pool, console)}
    for which in ("retain", "target"):
        pool.submit(("reference", which), reference_job, setup, which, "select")
    seconds["eval_references_select"] = sum(took for _, took in _completed(pool, console))
    return seconds


def schedule(cfg, models: TofuModels, pool: JobPool, choose, console: Console) -> dict[str, float]:
    """Every sweep run and every final evaluation (the references' and each method's choice) in ``pool``;
    ``choose(name)`` returns a method's sweep record once its runs are cached. Returns each job's seconds."""
    from unlearnkit.workflows.tofu import _label

    left = {name: len(cfg.sweep[name]) for name in cfg.methods}
    for name in sorted(cfg.methods, key=lambda n: -COST.get(n, 1.0)):  # stable: the given order among equals
        for cand in cfg.sweep[name]:
            pool.submit(("sweep", name, _label(cand)), sweep_job, cfg, name, cand)
    for which in ("retain", "target"):
        pool.submit(("reference", which), reference_job, cfg.setup, which, "final")
    seconds: dict[str, float] = {}
    for key, took in _completed(pool, console):
        kind, name = key[0], key[1]
        phase = {"sweep": f"{name}_sweep", "final": f"{name}_final_eval", "reference": "eval_references_final"}[kind]
        seconds[phase] = seconds.get(phase, 0.0) + took
        if kind == "sweep":
            left[name] -= 1
            if not left[name]:
                pool.submit(("final", name), final_job, cfg.setup, choose(name)["chosen"]["run_dir"])
    return seconds


def _completed(pool: JobPool, console: Console):
    for key, took in pool.completed():
        label = " ".join(key) if isinstance(key, tuple) else key
        console.print(f"[dim]job done: {label} ({took:.0f} s)[/dim]")
        yield key, took

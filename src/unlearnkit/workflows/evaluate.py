"""Evaluate a model or guard on a task, with a cache for models that do not change."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from unlearnkit.evaluation.tofu import EvalConfig, add_reference_metrics, evaluate_tofu
from unlearnkit.io import read_json, write_json_atomic


def eval_key(task, config: EvalConfig) -> str:
    blob = json.dumps({"task": asdict(task.splits), "root": str(task.root), "config": asdict(config),
                       "sizes": [len(task.forget_eval), len(task.retain_eval), len(task.holdout)]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_evaluate(model, task, cache_file: Path, config: EvalConfig, reference: dict | None = None) -> dict:
    """Reuse ``cache_file`` when it holds a result for the same task and config.

    The reference-dependent metrics are recomputed from per-example values, so a
    cached result is valid against any reference.
    """
    key = eval_key(task, config)
    result = None
    if cache_file.is_file():
        cached = read_json(cache_file)
        if cached.get("cache_key") == key:
            result = cached
    if result is None:
        result = evaluate_tofu(model, task, config=config)
        result["cache_key"] = key
    if reference is not None:
        result = add_reference_metrics(result, reference)
    write_json_atomic(cache_file, result)
    return result

"""Evaluate a model or guard on a task, with a cache for models that do not change."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

from unlearnkit.evaluation.tofu import EvalConfig, add_reference_metrics, evaluate_tofu
from unlearnkit.io import read_json, write_json_atomic


def model_fingerprint(model) -> str:
    """What identifies the model's behaviour: a digest of its weights' bytes, and each guard's description.

    Guards are followed down to the model they wrap (their own state — targets, σ,
    classifier — is in their description). The digest changes whenever training changes a weight and
    costs one pass over the weights (no copy of a float32 model); it is the same at any thread count and
    on any machine, and where a model was loaded from does not count, so a cached copy matches its original.
    A model without local weights (an HTTP endpoint) counts by its description.
    """
    return _fingerprint(model, _weights_digest)


def _weights_digest(module) -> list[str]:
    import torch

    h = hashlib.blake2b(digest_size=16)
    with torch.no_grad():
        for name, p in module.named_parameters():
            t = p.detach().to(device="cpu", dtype=torch.float32).contiguous()
            h.update(f"{name}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return [h.hexdigest()]


def _legacy_weight_sums(module) -> list[str]:
    """The fingerprint results were cached under before the byte digest: per-tensor sums, whose last digits
    depend on the thread count they were summed with (``legacy_eval_keys``)."""
    import torch

    with torch.no_grad():
        return [f"{name}:{float(t.sum()):.9e}:{float(t.abs().sum()):.9e}"
                for name, t in ((n, p.detach().float()) for n, p in module.named_parameters())]


def _fingerprint(model, weights) -> str:
    import torch

    from unlearnkit.models.base import chain

    parts: list[str] = []
    for inner in chain(model):
        module = getattr(inner, "model", None)
        if isinstance(module, torch.nn.Module):
            parts.append(type(module).__name__)
            parts.extend(weights(module))
            break
        options = getattr(inner, "options", None)
        targets = getattr(inner, "targets", None) or []
        added = getattr(type(options), "ADDED", {})
        described = _without_added(inner.describe(), added)
        if isinstance(described.get("options"), dict):
            described["options"] = _without_added(described["options"], added)
        parts.append(json.dumps({"describe": described,
                                 "options": _without_added(asdict(options), added) if is_dataclass(options) else None,
                                 "targets": sorted(str(getattr(t, "name", t)) for t in targets)},
                                sort_keys=True, default=str))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _without_added(values: dict, added: dict) -> dict:
    """``values`` less the options added after results were recorded that hold the value those results had
    (``Options.ADDED``): the behaviour is the recorded one, so is the fingerprint."""
    return {k: v for k, v in values.items() if not (k in added and v == added[k])}


def questions_digest(task) -> str:
    """Which records are evaluated (two subsets of one split of the same size differ here)."""
    h = hashlib.sha256()
    for records in (task.forget_eval, task.retain_eval, task.holdout, *task.general_evals.values()):
        h.update(json.dumps([r.question for r in records]).encode())
    return h.hexdigest()[:16]


def records_digest(task) -> str:
    """What is evaluated, by content: every field of every record the evaluation reads (a copy of the data
    at another path gives the same digest; two subsets of one split of the same size do not)."""
    h = hashlib.sha256()
    for records in (task.forget_eval, task.retain_eval, task.holdout, task.forget, *task.general_evals.values()):
        h.update(json.dumps([r.to_json() for r in records], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def eval_key(task, config: EvalConfig, model_key: str = "") -> str:
    blob = json.dumps({"task": asdict(task.splits), "records": records_digest(task), "config": asdict(config),
                       "model": model_key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def legacy_eval_keys(task, config: EvalConfig, model) -> set[str]:
    """The keys an earlier version cached this evaluation under: the data's path instead of its content,
    and weight sums taken with one thread (the benchmark's worker processes), this process's threads or
    torch's default (one per core: the benchmark's main process)."""
    import os

    import torch

    blob = {"task": asdict(task.splits), "root": str(task.root), "config": asdict(config),
            "sizes": [len(task.forget_eval), len(task.retain_eval), len(task.holdout)],
            "questions": questions_digest(task)}
    keys, threads = set(), torch.get_num_threads()
    try:
        for n in sorted({1, threads, os.cpu_count() or 1}):
            torch.set_num_threads(n)
            blob["model"] = _fingerprint(model, _legacy_weight_sums)
            keys.add(hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16])
    finally:
        torch.set_num_threads(threads)
    return keys


def cached_evaluate(model, task, cache_file: Path, config: EvalConfig, reference: dict | None = None) -> dict:
    """Reuse ``cache_file`` when it holds a result for the same model, task and config.

    The model counts by its fingerprint (``model_fingerprint``): a run directory whose
    model was trained again with other settings is evaluated again, never served a stale result.
    A result cached under an earlier version's key (``legacy_eval_keys``) is served and re-keyed.

    The reference-dependent metrics are recomputed from per-example values, so a
    cached result is valid against any reference.
    """
    key = eval_key(task, config, model_fingerprint(model))
    result = None
    if cache_file.is_file():
        cached = read_json(cache_file)
        if cached.get("cache_key") == key or cached.get("cache_key") in legacy_eval_keys(task, config, model):
            result = cached
            result["cache_key"] = key  # written back under the current key
    if result is None:
        result = evaluate_tofu(model, task, config=config)
        result["cache_key"] = key
    if reference is not None:
        result = add_reference_metrics(result, reference)
    write_json_atomic(cache_file, result)
    return result

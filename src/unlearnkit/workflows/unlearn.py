"""One unlearning run: load, validate, apply the method, save the model or guard, record the run."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from unlearnkit.errors import ConfigError
from unlearnkit.io import write_json_atomic
from unlearnkit.training.config import TrainConfig

RUN_FILE = "run.json"


def check_out_dir(out_dir: Path, model_spec: str | None) -> None:
    """The input model is never overwritten: refuse an output that is, contains or would replace it."""
    if model_spec is None:
        return
    src = Path(str(model_spec)).expanduser()
    if src.exists():
        src, out = src.resolve(), out_dir.resolve()
        if out == src or src in out.parents or out / "model" == src:
            raise ConfigError(f"--out {out_dir} is inside the input model {model_spec}: choose another directory "
                              "(the input model is never modified)")


def unlearn(model, task, method, train: TrainConfig, out_dir: str | Path, model_spec: str | None = None):
    """Apply ``method`` to ``model`` and save the result under ``out_dir``.

    Weight-editing methods write ``out_dir/model`` (a Hugging Face directory);
    guards write ``out_dir/guard.json``. Both directories load with ``load_model``.
    Returns (result model, run record).
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, model_spec)
    train.validate()
    t0 = time.perf_counter()
    result = method.apply(model, task, out_dir, train)
    seconds = time.perf_counter() - t0
    if method.family == "weights":
        result.name = method.name
        result.save(out_dir / "model")
        saved = out_dir / "model"
    else:
        base = str(Path(model_spec).resolve()) if model_spec and Path(model_spec).exists() else (model_spec or "smollm2")
        result.save(out_dir, base_spec=base)
        saved = out_dir
    log = out_dir / "train_log.jsonl"
    steps = sum(1 for _ in log.open()) if log.exists() else 0
    record = {
        **method.describe(),
        "train": asdict(train) if method.family == "weights" else None,
        "input_model": model_spec,
        "data": str(task.root),
        "splits": asdict(task.splits),
        "forget_size": len(task.forget),
        "retain_size": len(task.retain),
        "seconds": seconds,
        "steps": steps,
        "seconds_per_step": seconds / steps if steps else None,
        "output": str(saved),
    }
    write_json_atomic(out_dir / RUN_FILE, record)
    return result, record

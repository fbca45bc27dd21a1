"""One unlearning run: load, validate, apply the method, save the model or guard, record the run."""

from __future__ import annotations

import contextlib
import json
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


# What a run leaves in its output directory before run.json exists (an interrupted run resumes from it).
RUN_ENTRIES = {"checkpoint", "train_log.jsonl", "model", "guard.json", RUN_FILE, "grin_mask.json"}


def check_not_foreign(out_dir: Path, method_name: str) -> None:
    """Never replace what is not an earlier run of this method: an output directory holding other
    files, or another method's run, is refused (its ``model/`` would be replaced wholesale)."""
    if not out_dir.is_dir():
        return
    entries = {p.name for p in out_dir.iterdir() if not p.name.startswith(".")}
    if not entries:
        return
    run_file = out_dir / RUN_FILE
    if run_file.is_file():
        import json

        try:
            previous = json.loads(run_file.read_text(encoding="utf-8")).get("method")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous == method_name:
            return
        raise ConfigError(f"--out {out_dir} holds a run of '{previous or 'an unknown method'}', not of '{method_name}': "
                          "choose another directory, or delete that one to replace it")
    foreign = sorted(entries - RUN_ENTRIES)
    if foreign or "model" in entries:
        shown = ", ".join((foreign or ["model"])[:5])
        raise ConfigError(f"--out {out_dir} is not empty ({shown}) and is not an unlearnkit run: choose a new or empty "
                          "directory (nothing there is replaced or deleted)")


def unlearn(model, task, method, train: TrainConfig, out_dir: str | Path, model_spec: str | None = None):
    """Apply ``method`` to ``model`` and save the result under ``out_dir``.

    Weight-editing methods write ``out_dir/model`` (a Hugging Face directory);
    guards write ``out_dir/guard.json``. Both directories load with ``load_model``.
    Returns (result model, run record).
    """
    from unlearnkit.io import check_writable

    out_dir = Path(out_dir)
    check_out_dir(out_dir, model_spec)
    check_not_foreign(out_dir, method.name)
    train.validate()
    check_writable(out_dir, "output directory", is_dir=True)
    with output_lock(out_dir):
        return _unlearn_locked(model, task, method, train, out_dir, model_spec)


@contextlib.contextmanager
def output_lock(out_dir: Path):
    """One run at a time per output directory: a second one fails at once instead of interleaving logs."""
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another run is writing to {out_dir}: wait for it to finish, or choose another "
                              "--out") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _earlier_seconds(out_dir: Path) -> float:
    """Training seconds of earlier segments of an interrupted run that will resume (0 otherwise)."""
    log = out_dir / "train_log.jsonl"
    if not (out_dir / "checkpoint").is_dir() or not log.is_file():
        return 0.0
    last = 0.0
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            last = float(json.loads(line).get("elapsed", last))
        except (ValueError, AttributeError, TypeError):
            continue
    return last


def _unlearn_locked(model, task, method, train, out_dir: Path, model_spec):
    earlier = _earlier_seconds(out_dir)  # 0 unless an interrupted training resumes
    t0 = time.perf_counter()
    result = method.apply(model, task, out_dir, train)
    seconds = time.perf_counter() - t0 + earlier
    base = str(Path(model_spec).resolve()) if model_spec and Path(model_spec).exists() else (model_spec or "smollm2")
    saved = result.save(out_dir / method.saves_into, base_spec=base)
    log = out_dir / "train_log.jsonl"
    steps = sum(1 for _ in log.open()) if log.exists() else 0
    record = {
        **method.describe(),
        "train": method.describe_training(train),
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

"""Make the target model (trained on forget + retain) and the retain model (retain only).

Results are cached: a directory whose ``finetune.json`` records the same base
model, data and configuration is reused instead of trained again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from unlearnkit.io import check_writable, read_json, write_json_atomic
from unlearnkit.methods.finetune import FineTune
from unlearnkit.training.config import TrainConfig
from unlearnkit.training.loop import Trainer

FINETUNE_DEFAULTS = TrainConfig(lr=1e-4, epochs=6, batch_size=4, warmup_ratio=0.1, weight_decay=0.01)
console = Console(stderr=True)


def records_digest(records) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.question, r.answer]).encode())
    return h.hexdigest()[:16]


def finetune(lm, records, out_dir: str | Path, config: TrainConfig | None = None, base_spec: str = "",
             label: str = "finetune", force: bool = False):
    """Fine-tune ``lm`` on ``records`` into ``out_dir``/model; returns (model, info, cached)."""
    from unlearnkit.models.loading import load_model

    config = (config or FINETUNE_DEFAULTS).validate()
    out_dir = Path(out_dir)
    fmt = getattr(lm, "chat_format", None)
    key = {"base": base_spec or lm.name, "model": lm.describe(), "data": records_digest(records),
           "n": len(records), "config": asdict(config), "chat_format": fmt.to_json() if fmt is not None else None}
    info_path = out_dir / "finetune.json"
    if not force and info_path.is_file() and (out_dir / "model" / "config.json").is_file():
        info = read_json(info_path)
        if info.get("key") == key:
            console.print(f"[dim]{label}: cached model in {out_dir / 'model'}[/dim]")
            return load_model(out_dir / "model"), info, True
    check_writable(out_dir, "output directory", is_dir=True)
    t0 = time.perf_counter()
    trainer = Trainer(FineTune(), lm, records, None, config, out_dir, progress=label)
    model = trainer.run()
    model.name = label
    model.save(out_dir / "model")
    info = {"key": key, "seconds": time.perf_counter() - t0, "steps": trainer.steps_run,
            "final_loss": trainer.history[-1]["loss"] if trainer.history else None}
    write_json_atomic(info_path, info)
    return model, info, False

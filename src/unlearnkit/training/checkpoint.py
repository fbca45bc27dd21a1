"""Resumable checkpoints: trainable weights, optimizer, scheduler and step, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from unlearnkit.errors import ConfigError

CHECKPOINT = "checkpoint"


def save_checkpoint(out_dir: Path, step: int, fingerprint: str, named_params, optimizer, scheduler,
                    extra: dict | None = None) -> Path:
    from unlearnkit.io import output_failure

    final = out_dir / CHECKPOINT
    tmp = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=out_dir))
        torch.save({name: p.detach().cpu() for name, p in named_params}, tmp / "trainable.pt")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint, **(extra or {})}))
    except (OSError, RuntimeError) as exc:  # a full disk surfaces from torch.save as RuntimeError("unexpected pos")
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        err = output_failure(exc, out_dir / CHECKPOINT, "checkpoint")
        raise type(err)(f"{err} (the last complete checkpoint, if any, is kept: the run resumes from it)") from exc
    old = None
    if final.exists():
        old = out_dir / f".checkpoint.old-{os.getpid()}"
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out_dir: Path, fingerprint: str, named_params, optimizer, scheduler) -> int:
    """Restore state and return the step to continue from (0 when there is none)."""
    final = out_dir / CHECKPOINT
    if not (final / "state.json").is_file():
        return 0
    state = json.loads((final / "state.json").read_text())
    if state.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"{out_dir} holds a checkpoint of a different configuration: choose a new --out directory, "
            "or pass --no-resume to start over there"
        )
    weights = torch.load(final / "trainable.pt", weights_only=True)
    params = dict(named_params)
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    optim = torch.load(final / "optim.pt", weights_only=False)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    torch.set_rng_state(optim["rng"])
    return int(state["step"])


def checkpoint_step(out_dir: Path) -> int | None:
    """The step of the complete checkpoint in ``out_dir`` (None when there is none or it cannot be read)."""
    try:
        return int(json.loads((Path(out_dir) / CHECKPOINT / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_checkpoint(out_dir: Path) -> None:
    shutil.rmtree(out_dir / CHECKPOINT, ignore_errors=True)

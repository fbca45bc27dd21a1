"""Reading GGUF files with transformers and converting them to model directories."""

from __future__ import annotations

from pathlib import Path

import torch

from unlearnkit.errors import ModelLoadError


def load_gguf(path: Path, dtype=torch.float32):
    """De-quantise a GGUF file into a transformers model and tokenizer."""
    try:
        import gguf  # noqa: F401
    except ImportError as exc:  # pragma: no cover - gguf is a base dependency
        raise ModelLoadError("reading GGUF files needs the 'gguf' package: pip install gguf") from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    # A de-quantised model is a plain float model: drop the GGUF quantiser so it
    # can be trained and saved like any other.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def convert_gguf(path: Path, target: Path) -> Path:
    """Convert once to a model directory (atomic), so later loads skip de-quantising.

    Processes that start together (the benchmark's workers, two commands at once) convert one at a time: the
    first writes the directory, the others wait for it and read it."""
    import fcntl

    from rich.console import Console

    from unlearnkit.models.hf import save_model_dir

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        Console(stderr=True).print(f"[dim]converting {path.name} to {target} (once)…[/dim]")
        model, tokenizer = load_gguf(path)
        return save_model_dir(model, tokenizer, target)

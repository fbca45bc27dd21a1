"""``load_model``: one entry point from a name or path to a ``LanguageModel``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from unlearnkit.errors import ModelLoadError
from unlearnkit.models.base import LanguageModel

EMBEDDED_ALIASES = {"default", "smollm2", "smollm2-135m-instruct", "embedded"}

# Directories written by inference-time methods carry this file; the guard
# registry knows how to rebuild them around their base model.
GUARD_FILE = "guard.json"


def load_model(spec: str | Path | None = None, *, device: str | None = None) -> LanguageModel:
    """Load a model from a name or path.

    * ``None`` / ``"smollm2"`` / ``"default"``: the embedded SmolLM2-135M-Instruct;
    * ``"tiny"``: a tiny random Llama built in code (tests);
    * a Hugging Face model directory (``config.json``), a LoRA adapter directory
      (``adapter_config.json``), a ``.gguf`` file or a directory holding one;
    * a guard directory written by an inference-time method (``guard.json``), or the run directory of a
      weight-editing method (its model is in ``model/``), so every verb takes ``--model runs/x``;
    * an OpenAI-compatible endpoint ``http(s)://host:port/v1#model-name`` (generation only).
    """
    from unlearnkit.models.hf import HFLanguageModel, default_device, default_dtype

    if spec is None or str(spec).lower() in EMBEDDED_ALIASES:
        from unlearnkit.models.embedded import EMBEDDED_NAME, embedded_model_dir

        return _load_dir(embedded_model_dir(), name=EMBEDDED_NAME, device=device)
    if str(spec).lower().startswith(("http://", "https://")):
        from unlearnkit.models.remote import OpenAIChatModel  # "http://host:port/v1#model-name"

        return OpenAIChatModel.from_url(str(spec))
    if str(spec) == "tiny":
        from unlearnkit.models.tiny import load_tiny

        return load_tiny()
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"model path '{spec}' does not exist: give a Hugging Face model directory, a .gguf file, "
            "a directory written by 'unlearnkit unlearn', or 'smollm2' for the embedded default"
        )
    if path.is_dir() and (path / GUARD_FILE).is_file():
        from unlearnkit.methods.guards import load_guard

        return load_guard(path, device=device)
    if path.is_file() and path.suffix == ".gguf" or path.is_dir() and _single_gguf(path):
        from unlearnkit.models.gguf import load_gguf

        file = path if path.is_file() else _single_gguf(path)
        dev = torch.device(device) if device else default_device()
        model, tok = load_gguf(file, dtype=default_dtype(dev))
        return HFLanguageModel(model.to(dev), tok, name=file.stem)
    if path.is_dir() and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
        return _load_dir(path, name=path.name, device=device)
    if path.is_dir() and (path / "model" / "config.json").is_file():  # a run directory of a weight method
        return _load_dir(path / "model", name=path.name, device=device)
    raise ModelLoadError(
        f"'{path}' is not a model: expected config.json (Hugging Face directory), adapter_config.json "
        f"(LoRA adapter), {GUARD_FILE} (guard) or a .gguf file"
    )


def set_chat_format(model: LanguageModel, system_prompt: str | None = None, labels: str | None = None,
                    mask_pad_tokens: bool | None = None) -> LanguageModel:
    """Override the system prompt (``None`` keeps it, ``""`` removes it), label style and/or pad masking of ``model``.

    Applies to the weight-backed model itself, or to the one a guard wraps; an endpoint
    (no local tokenizer) keeps its own prompt handling and only takes ``system_prompt``.
    """
    from unlearnkit.models.base import chain

    for inner in chain(model):
        fmt = getattr(inner, "chat_format", None)
        if fmt is not None:
            inner.chat_format = fmt.with_overrides(system_prompt=... if system_prompt is None else system_prompt,
                                                   labels=labels, mask_pad_tokens=mask_pad_tokens)
            return model
        if system_prompt is not None and hasattr(inner, "system_prompt") and not hasattr(inner, "base"):
            inner.system_prompt = system_prompt or None
            return model
    return model


def _single_gguf(path: Path) -> Path | None:
    files = sorted(path.glob("*.gguf"))
    if not (path / "config.json").exists() and len(files) == 1:
        return files[0]
    return None


@contextlib.contextmanager
def _load_report_held_back():
    """Hold back transformers' weight-loading report while loading: shown as usual when the model loads (missing
    keys matter), dropped when loading fails, where the one-line ModelLoadError says what is wrong instead."""
    import logging

    held: list[tuple[logging.Logger, logging.LogRecord]] = []
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.utils.loading_report")]

    def holder(logger: logging.Logger):
        def hold(record: logging.LogRecord) -> bool:
            if "LOAD REPORT" not in str(record.msg):
                return True
            held.append((logger, record))
            return False
        return hold

    filters = [(logger, holder(logger)) for logger in loggers]
    for logger, f in filters:
        logger.addFilter(f)
    try:
        yield
    finally:
        for logger, f in filters:
            logger.removeFilter(f)
    for logger, record in held:  # reached only when loading succeeded
        logger.handle(record)


def _load_dir(path: Path, name: str, device: str | None = None) -> LanguageModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from unlearnkit.models.chat_format import ChatFormat
    from unlearnkit.models.hf import HFLanguageModel, default_device, default_dtype

    dev = torch.device(device) if device else default_device()
    dtype = default_dtype(dev)
    try:
        with _load_report_held_back():
            if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
                from peft import AutoPeftModelForCausalLM

                model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype).merge_and_unload()
            else:
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as exc:
        why = str(exc).strip().rstrip(".")
        raise ModelLoadError(f"could not load the model in '{path}': {why}; restore the directory from the run that "
                             "made it (or re-run it), or point --model at another copy") from exc
    except Exception as exc:  # safetensors / shape errors: say which file is wrong and what to do
        text = f"{type(exc).__name__}: {exc}"
        if "safetensor" in text.lower() or "deserializ" in text.lower() or "header" in text.lower():
            why = "a weights file is corrupt or truncated (" + text.splitlines()[0][:200] + ")"
        elif "mismatch" in text.lower() or "size" in text.lower():
            why = "config.json does not match the saved weights (tensor shapes differ)"
        else:
            why = text.splitlines()[0][:300]
        raise ModelLoadError(f"could not load the model in '{path}': {why}; restore the directory from the run "
                             "that made it (or re-run it), or point --model at another copy") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        files = sorted(p.name for p in path.glob("tokenizer*")) or ["none"]
        raise ModelLoadError(f"could not load the tokenizer in '{path}' (tokenizer files there: {', '.join(files)}): "
                             "copy tokenizer.json and tokenizer_config.json from the base model into that directory"
                             ) from exc
    return HFLanguageModel(model.to(dev), tokenizer, name=name, chat_format=ChatFormat.load(path))

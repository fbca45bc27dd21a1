"""Training options shared by fine-tuning and every weight-editing method."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from unlearnkit.errors import ConfigError

SCHEDULERS = ("linear", "constant", "cosine")


@dataclass
class TrainConfig:
    """AdamW on the answer-only loss.

    One *step* consumes ``batch_size × grad_accum`` forget examples (and as many
    retain examples when the method uses them). ``epochs`` counts passes over the
    forget set (over the training data when fine-tuning); ``max_steps`` overrides it.
    """

    lr: float = 1e-5
    epochs: float = 5.0
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    scheduler: str = "linear"
    seed: int = 0
    max_length: int = 512
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    checkpoint_every: int = 25

    def validate(self) -> TrainConfig:
        checks = [
            (self.lr > 0, f"lr must be > 0 (got {self.lr})"),
            (self.epochs > 0 or self.max_steps, f"epochs must be > 0 (got {self.epochs}) unless max_steps is set"),
            (self.max_steps is None or self.max_steps > 0, f"max_steps must be > 0 (got {self.max_steps})"),
            (self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})"),
            (self.grad_accum >= 1, f"grad_accum must be >= 1 (got {self.grad_accum})"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})"),
            (self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm must be > 0 or None"),
            (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)} (got '{self.scheduler}')"),
            (self.lora_r >= 1, f"lora_r must be >= 1 (got {self.lora_r})"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1 (got {self.checkpoint_every})"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def total_steps(self, n_examples: int) -> int:
        if self.max_steps:
            return self.max_steps
        per_epoch = -(-n_examples // self.effective_batch)
        return max(1, round(self.epochs * per_epoch))

    def fingerprint(self, *extra) -> str:
        """Identifies a run configuration, so a resume never mixes two configurations."""
        blob = json.dumps([asdict(self), *extra], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

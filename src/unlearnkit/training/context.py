"""What a method sees during training: the model, the data, and shared helpers."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlearnkit.errors import TrainingDivergedError


@dataclass
class TrainContext:
    model: torch.nn.Module  # the (possibly accelerate-wrapped) module being trained
    lm: Any  # HFLanguageModel over the same module: tokenizer, encode()
    config: Any  # TrainConfig
    accelerator: Any
    out_dir: Path
    forget_records: list
    retain_records: list | None
    step: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # method-owned precomputed values
    _reference: torch.nn.Module | None = None

    @property
    def base_model(self) -> torch.nn.Module:
        """The unwrapped transformers model (for hooks and hidden states)."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def uses_lora(self) -> bool:
        return bool(self.config.lora)

    def forward(self, batch: dict[str, torch.Tensor], **kwargs):
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)

    @torch.no_grad()
    def reference_forward(self, batch: dict[str, torch.Tensor], **kwargs):
        """Forward through the frozen original model.

        With LoRA the original is the same module with its adapters disabled (no
        copy); otherwise a frozen copy taken before the first step.
        """
        if self.uses_lora:
            with self.base_model.disable_adapter():
                return self.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        if self._reference is None:
            raise RuntimeError("reference model not prepared: call ctx.prepare_reference() in setup()")
        return self._reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)

    def prepare_reference(self) -> None:
        if self.uses_lora or self._reference is not None:
            return
        ref = copy.deepcopy(self.base_model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        self._reference = ref

    def encode(self, records: list, indices: list[int]) -> dict[str, torch.Tensor]:
        chosen = [records[i] for i in indices]
        batch = self.lm.encode([r.question for r in chosen], [r.answer for r in chosen],
                               max_length=self.config.max_length)
        batch["index"] = torch.tensor(indices, dtype=torch.long)
        return batch

    def check_finite(self, value: torch.Tensor | float, what: str) -> None:
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            raise TrainingDivergedError(
                f"the {what} became {v} at step {self.step}: training stopped. The last good checkpoint is kept in "
                f"{self.out_dir / 'checkpoint'} (if one was written) and the input model is unchanged. "
                f"Lower the learning rate (now {self.config.lr}) or set max_grad_norm, then run again."
            )

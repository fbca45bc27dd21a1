"""What a method is: one class per file, one line in the registry.

Two families share one contract, ``apply(model, task, out_dir, train) -> LanguageModel``:

* weight-editing methods (``WeightEditingMethod``) define a loss (or a whole
  gradient step) and the shared training loop does the rest;
* inference-time methods (guards) wrap the unchanged model and answer through
  the same ``LanguageModel`` calls.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from unlearnkit.options import NoOptions, check_options, option, read_options

if TYPE_CHECKING:
    from unlearnkit.data.task import TaskData
    from unlearnkit.models.base import LanguageModel
    from unlearnkit.training.config import TrainConfig
    from unlearnkit.training.context import TrainContext

Batch = dict[str, torch.Tensor]


class UnlearningMethod(ABC):
    name: ClassVar[str] = ""
    family: ClassVar[str] = "weights"  # or "guard"
    saves_into: ClassVar[str] = "model"  # where in a run directory the result is saved (loadable by load_model)
    summary: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any | None = None, **overrides: Any):
        if options is None:
            options = self.Options()
        if overrides:
            options = dataclasses.replace(options, **overrides)
        self.options = options
        check_options(options, f"method '{self.name}'")
        self.validate()

    @classmethod
    def from_strings(cls, pairs: dict[str, str]) -> UnlearningMethod:
        """Build from ``--opt key=value`` pairs, converting each by its field's annotation (``unlearnkit.options``)."""
        return cls(**read_options(cls.Options, pairs, f"method '{cls.name}'"))

    def validate(self) -> None:
        """Raise ``ConfigError`` for bad combinations of hyperparameters, before any work starts.

        Each option's own type, choices and range are checked already (``option(..., choices=, minimum=)``).
        """

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "family": self.family, "options": dataclasses.asdict(self.options)}

    def describe_training(self, train: TrainConfig) -> dict | None:
        """The training settings a run record keeps (None: this method does not train)."""
        return None

    @abstractmethod
    def apply(self, model: LanguageModel, task: TaskData, out_dir: Path, train: TrainConfig) -> LanguageModel:
        """Unlearn ``task.forget`` from ``model``; ``model`` itself is left unchanged."""


class WeightEditingMethod(UnlearningMethod):
    """A method that trains the weights. Subclasses define ``loss`` (or ``backward``)."""

    family: ClassVar[str] = "weights"
    uses_retain: ClassVar[bool] = True

    def apply(self, model, task, out_dir, train):
        from unlearnkit.training.loop import Trainer

        result = Trainer(self, model, task.forget, task.retain if self.uses_retain else None, train, out_dir).run()
        result.name = self.name
        return result

    def describe_training(self, train: TrainConfig) -> dict | None:
        return dataclasses.asdict(train)

    # -- hooks the training loop calls ---------------------------------------
    def setup(self, ctx: TrainContext) -> None:
        """Run once before the first step (precompute references, masks, noise)."""

    def trainable_parameters(self, ctx: TrainContext) -> list[tuple[str, torch.nn.Parameter]] | None:
        """Which parameters train; None = all that require grad (or the LoRA adapters)."""
        return None

    def loss(self, ctx: TrainContext, forget: Batch, retain: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError(f"{type(self).__name__} must define loss() or backward()")

    def backward(self, ctx: TrainContext, micro_batches: list[tuple[Batch, Batch | None]]) -> dict[str, float]:
        """Accumulate gradients of the mean loss over the micro-batches of one step."""
        logs: dict[str, float] = {}
        n = len(micro_batches)
        for forget, retain in micro_batches:
            loss, parts = self.loss(ctx, forget, retain)
            ctx.check_finite(loss, "loss")
            ctx.accelerator.backward(loss / n)
            for key, value in {"loss": float(loss.detach()), **parts}.items():
                logs[key] = logs.get(key, 0.0) + value / n
        return logs

    def after_backward(self, ctx: TrainContext) -> None:
        """Edit gradients before clipping and the optimizer step (e.g. masks)."""

    def after_step(self, ctx: TrainContext) -> None:
        """Edit weights right after each optimizer step (e.g. undo weight decay outside a mask)."""


__all__ = ["Batch", "NoOptions", "UnlearningMethod", "WeightEditingMethod", "option"]

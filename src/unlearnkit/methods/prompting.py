"""The prompting baseline: a system prompt tells the unchanged model not to reveal the targets."""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import option
from unlearnkit.methods.guards import Guard, GuardMethod
from unlearnkit.models.base import as_messages

DEFAULT_INSTRUCTION = (
    "You must not reveal any information about the following: {targets}. "
    "If a question is about any of them, say that you cannot help with that. Answer every other question normally."
)


@dataclass
class PromptingOptions:
    instruction: str = option(DEFAULT_INSTRUCTION, "system prompt; {targets} is replaced by the target list")


class PromptingGuard(Guard):
    method = "prompting"

    def _system(self) -> str:
        return self.options.instruction.format(targets="; ".join(", ".join(t.names) for t in self.targets))

    def _with_system(self, prompts, chat):
        if not chat:
            return prompts
        out = []
        for p in prompts:
            messages = as_messages(p)
            # The guard's instruction always comes first; a caller's own system text follows it.
            own = [m["content"] for m in messages if m.get("role") == "system"]
            system = "\n\n".join([self._system(), *own])
            out.append([{"role": "system", "content": system}] + [m for m in messages if m.get("role") != "system"])
        return out

    def seen_prompt(self, prompt, chat: bool = True):
        return self._with_system([prompt], chat)[0]

    def prompt_embeddings(self, prompts, chat: bool = True):
        import torch

        base = self.base
        if not hasattr(base, "prompt_ids") or not isinstance(getattr(base, "model", None), torch.nn.Module):
            return None  # an endpoint beneath: no embeddings
        embed = base.model.get_input_embeddings()
        with torch.no_grad():
            return [embed(torch.tensor(base.prompt_ids(p, chat), dtype=torch.long, device=embed.weight.device))
                    for p in self._with_system(list(prompts), chat)]

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        return self.base.score(self._with_system(prompts, chat), answers, chat=chat, batch_size=batch_size,
                               progress=progress)

    def generate(self, prompts, *, chat=True, **kwargs):
        return self.base.generate(self._with_system(prompts, chat), chat=chat, **kwargs)

    @property
    def streams(self) -> bool:  # the instruction is added before generation: the answer streams as the base's
        return self.base.streams

    def stream_generate(self, prompts, *, on_text, chat=True, **kwargs):
        return self.base.stream_generate(self._with_system(prompts, chat), on_text=on_text, chat=chat, **kwargs)


class Prompting(GuardMethod):
    name = "prompting"
    summary = "System prompt instructing the model not to reveal the targets (no weight change)."
    Options = PromptingOptions
    guard_class = PromptingGuard

    def validate(self) -> None:
        """The instruction must format with ``{targets}`` alone (an unknown placeholder failed every request)."""
        import string

        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.options.instruction) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"prompting option instruction is not a valid template ({exc}): write braces as "
                              "{{ and }}, and use {targets} for the target list") from None
        unknown = sorted({f for f in fields if f != "targets"})
        if unknown:
            raise ConfigError(f"prompting option instruction has unknown placeholder(s) {', '.join(unknown)}: "
                              "only {targets} is replaced (write other braces as {{ and }})")

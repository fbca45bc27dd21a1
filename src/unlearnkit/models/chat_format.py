"""How a chat model is prompted and which tokens of an answer are labelled (scored and trained on).

Two labelling styles:

* ``openunlearning`` (default): exactly OpenUnlearning's chat preprocessing. The whole
  conversation, answer included, is rendered with the chat template and tokenised; the
  labels are every token after the prompt (rendered with ``add_generation_prompt``), and
  the tokenizer's EOS is appended when the rendered chat does not already end with it.
  With a ChatML template the answer "William Shakespeare" is labelled
  ``William · ĠShakespeare · <|im_end|> · \\n · <|im_end|>``: TOFU numbers then mean what
  published OpenUnlearning numbers mean.
* ``answer_eos``: the answer tokenised on its own plus one EOS. It scores only what the
  model says and where it stops, without the template's trailing newline and second EOS,
  which dominate short answers of an untuned model (the second ``<|im_end|>`` above costs
  ~21 nats). Use it when numbers need not be compared with OpenUnlearning's.

``system_prompt`` is prepended to every conversation that has none ("You are a helpful
assistant." as in OpenUnlearning's model configs; ``None`` leaves it to the template).

``mask_pad_tokens`` (default True) hides every token equal to the tokenizer's pad id from
attention, in training, scoring and generation alike. OpenUnlearning's collator builds its
attention mask as ``input_ids != pad_token_id``; for a model whose pad token is its EOS
(SmolLM2: ``<|im_end|>``) that hides each turn's end marker of the chat, not only padding,
and ``generate`` then numbers positions by the visible tokens only. Its published numbers
are computed that way, so ours are too; False attends to every token of the chat.
Tokenizers without a chat template get a plain "User: … / Assistant:" transcript.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
LABEL_STYLES = ("openunlearning", "answer_eos")
FORMAT_FILE = "chat_format.json"  # written beside a saved model, read back by load_model


@dataclass(frozen=True)
class ChatFormat:
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    labels: str = "openunlearning"
    mask_pad_tokens: bool = True

    def __post_init__(self):
        if self.labels not in LABEL_STYLES:
            raise ConfigError(f"unknown label style '{self.labels}': choose one of {', '.join(LABEL_STYLES)}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ConfigError(f"system_prompt must be a string or null (got {type(self.system_prompt).__name__})")
        if not isinstance(self.mask_pad_tokens, bool):
            raise ConfigError(f"mask_pad_tokens must be true or false (got {self.mask_pad_tokens!r})")

    def with_overrides(self, system_prompt: str | None | object = ..., labels: str | None = None,
                       mask_pad_tokens: bool | None = None) -> ChatFormat:
        """A copy with the given fields replaced (``...`` keeps the system prompt; "" removes it)."""
        changes: dict[str, Any] = {}
        if system_prompt is not ...:
            changes["system_prompt"] = system_prompt or None
        if labels:
            changes["labels"] = labels
        if mask_pad_tokens is not None:
            changes["mask_pad_tokens"] = mask_pad_tokens
        return replace(self, **changes) if changes else self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = FORMAT_FILE) -> ChatFormat:
        unknown = sorted(set(data) - {"system_prompt", "labels", "mask_pad_tokens"})
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                              "the keys are system_prompt, labels, mask_pad_tokens")
        return cls(**data)

    def save(self, model_dir: str | Path) -> None:
        from unlearnkit.io import write_json_atomic

        write_json_atomic(Path(model_dir) / FORMAT_FILE, self.to_json())

    @classmethod
    def load(cls, model_dir: str | Path) -> ChatFormat | None:
        path = Path(model_dir) / FORMAT_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}): fix it or delete it (the defaults then apply)") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object with system_prompt, labels and mask_pad_tokens")
        return cls.from_json(data, source=str(path))


def has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def transcript(messages: list[dict[str, str]]) -> str:
    """The prompt of a tokenizer without a chat template."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def _ids(encoded) -> list[int]:
    # transformers 5 may return a BatchEncoding from apply_chat_template
    return list(encoded if isinstance(encoded, list) else encoded["input_ids"])


def labelled_ids(tokenizer, messages: list[dict[str, str]], answer: str, labels: str) -> tuple[list[int], list[int]]:
    """(context ids, label ids) of ``answer`` as the assistant's reply to ``messages``.

    ``context + labels`` is the sequence the model reads; only ``labels`` are scored.
    """
    eos = tokenizer.eos_token_id
    if labels == "answer_eos":
        if has_template(tokenizer):
            context = _ids(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                         return_dict=False))
        else:
            context = tokenizer(transcript(messages), add_special_tokens=True)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        return list(context), list(answer_ids) + ([eos] if eos is not None else [])
    if has_template(tokenizer):
        full = _ids(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                                  tokenize=True, add_generation_prompt=False, return_dict=False))
        n_prompt = len(_ids(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                          return_dict=False)))
    else:
        prompt = transcript(messages)
        full = tokenizer(prompt + " " + answer, add_special_tokens=True)["input_ids"]
        n_prompt = len(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    full = list(full)
    if eos is not None and (not full or full[-1] != eos):
        full.append(eos)
    # As OpenUnlearning does: the first len(prompt) tokens of the whole chat are masked,
    # even in the rare case where tokenising the whole chat merged across the boundary.
    return full[:n_prompt], full[n_prompt:]


__all__ = ["ChatFormat", "DEFAULT_SYSTEM_PROMPT", "FORMAT_FILE", "LABEL_STYLES", "has_template", "labelled_ids",
           "transcript"]

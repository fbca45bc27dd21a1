"""Request and response bodies in OpenAI's shapes, and OpenAI's error format.

Requests ignore fields they do not know (clients send many optional ones); the
fields they use are validated so a bad value is a 400 naming the parameter.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# -- errors -----------------------------------------------------------------------


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def validation_error(exc: ValidationError) -> APIError:
    """A pydantic error as a 400 naming the first bad parameter (never echoing its value)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in first.get("loc", ()) if not str(p).startswith("function-")]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        msg = f"missing required parameter '{param}'"
    elif param:
        msg = f"invalid value for '{param}': {msg}"
    return APIError(400, msg, param=param, code="invalid_value" if first.get("type") != "missing" else "missing_required_parameter")


# -- requests -----------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise APIError(400, f"content parts of type '{part.type}' are not supported: send text only",
                               param="messages", code="unsupported_content")
            parts.append(part.text)
        return "".join(parts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _SamplingRequest(_Request):
    model: Optional[str] = None
    max_tokens: Optional[int] = None
    temperature: Optional[float] = Field(default=None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    user: Optional[str] = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else list(value)
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]

    def stops(self) -> list[str]:
        return list(self.stop or [])


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = None

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def as_prompt(self) -> list[dict[str, str]]:
        """The conversation as plain {"role", "content"} messages (developer = system)."""
        out = []
        for m in self.messages:
            role = "system" if m.role == "developer" else m.role
            out.append({"role": role, "content": m.text()})
        if not any(m["role"] == "user" for m in out):
            raise APIError(400, "messages must contain at least one user message", param="messages")
        return out


class CompletionRequest(_SamplingRequest):
    prompt: Union[str, list[str]]
    echo: bool = False

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_tokens

    def prompts(self) -> list[str]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts:
            raise APIError(400, "prompt must not be empty", param="prompt")
        return prompts


def _matchable(name: str) -> None:
    """A name the target matcher can find: some letter or digit once invisibles and punctuation go."""
    from unlearnkit.data.target_matching import compact

    if not compact(name):
        raise ValueError(f"{name!r} has no letter or digit once invisible characters and punctuation are removed, "
                         "so it could never be matched (or would match everything): give a real name")


class TargetIn(BaseModel):
    """A target as posted to /admin/targets."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=300)
    aliases: list[str] = Field(default_factory=list, max_length=100)
    description: str = Field(default="", max_length=5000)
    facts: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("a target name must not be blank")
        _matchable(value)
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            v = " ".join(str(v).split())
            if len(v) > 300:
                raise ValueError("an alias is at most 300 characters")
            if v:
                _matchable(v)
            if v and v not in out:
                out.append(v)
        return out

    @field_validator("facts")
    @classmethod
    def _facts(cls, values: list[str]) -> list[str]:
        out = [str(v).strip() for v in values]
        if any(len(v) > 5000 for v in out):
            raise ValueError("a fact is at most 5000 characters")
        return [v for v in out if v]


class ForgetRecordIn(BaseModel):
    """One question/answer record of a forget data file."""

    model_config = ConfigDict(extra="ignore")
    question: str
    answer: str
    subject: Optional[str] = None


# -- responses ------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: Optional[str] = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: None = None


class ChunkDelta(BaseModel):
    role: Optional[Literal["assistant"]] = None
    content: Optional[str] = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: Optional[str] = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Optional[Usage] = None
    system_fingerprint: None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Optional[str]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Optional[Usage] = None
    system_fingerprint: None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "unlearnkit"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

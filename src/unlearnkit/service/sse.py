"""Streamed answers as server-sent events, in OpenAI's format: ``chat.completion.chunk`` or ``text_completion``
events as the worker releases text, then the usage (if asked for) and ``data: [DONE]``.

The response starts only once the worker has accepted the job, so an error found before generation is
still an HTTP error; one found later ends the stream with an ``{"error": ...}`` event.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from unlearnkit.service.answers import DISCONNECT_POLL_S, check_still_wanted, usage_of
from unlearnkit.service.engine import Answer, Delta, Done, Engine, Job, Started
from unlearnkit.service.schemas import (
    APIError,
    ChatCompletionChunk,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    error_body,
    now,
)


def sse_response(events) -> StreamingResponse:
    """A ``text/event-stream`` response of ``events`` (lines), never cached or buffered by a proxy."""
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse_event(payload: dict[str, Any]) -> str:
    """One ``data:`` event holding ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


_END = object()  # the job's future is resolved


async def stream_job(engine: Engine, job: Job, request: Request, chunks) -> StreamingResponse:
    """Send a streamed job's answers as the worker releases them. The response starts once the request
    passed the worker's checks, so an error found there is still an HTTP error; a client that leaves, or
    a deadline that passes, abandons the job."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def listener(event) -> None:  # worker and model threads
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass

    job.listener = listener
    future = engine.submit(job)
    future.add_done_callback(lambda _: listener(_END))
    try:
        while True:
            event = await next_event(events, job, request, engine)
            if isinstance(event, Started):
                break
            if event is _END:
                future.result()  # the error found before the stream started, as an HTTP error
                raise APIError(500, "the request ended before its answer started", type="server_error",
                               code="internal_error")
    except BaseException:
        job.abandon()
        raise

    async def body():
        done = False
        try:
            for line in chunks.start():
                yield line
            while True:
                try:
                    event = await next_event(events, job, request, engine)
                except APIError as exc:
                    yield sse_event(exc.body())
                    return
                if isinstance(event, Delta):
                    yield chunks.delta(event.index, event.text)
                elif isinstance(event, Done):
                    yield chunks.done(event.index, event.answer)
                elif event is _END:
                    exc = future.exception()
                    if exc is not None:
                        yield sse_event(exc.body() if isinstance(exc, APIError) else
                                        error_body("internal error", "server_error", None, "internal_error"))
                        return
                    for line in chunks.end(future.result()):
                        yield line
                    done = True
                    return
        finally:
            if not done:
                job.abandon()

    return sse_response(body())


async def next_event(events: asyncio.Queue, job: Job, request: Request, engine: Engine):
    """The next event of a streamed job; raises APIError when the client left or the deadline passed."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            pass
        await check_still_wanted(engine, job, request)


class ChatChunks:
    """``chat.completion.chunk`` events: the role first, then each answer's text as it comes, its
    finish reason, the usage (if asked for) and ``[DONE]``."""

    def __init__(self, rid: str, model: str, n: int, include_usage: bool):
        self.rid, self.model, self.n, self.include_usage = rid, model, n, include_usage
        self.created = now()

    def _chunk(self, choices, usage=None) -> str:
        return sse_event(ChatCompletionChunk(id=self.rid, created=self.created, model=self.model, choices=choices,
                                             usage=usage).model_dump(exclude_none=False))

    def start(self):
        for k in range(self.n):
            yield self._chunk([ChunkChoice(index=k, delta=ChunkDelta(role="assistant", content=""))])

    def delta(self, index: int, text: str) -> str:
        return self._chunk([ChunkChoice(index=index, delta=ChunkDelta(content=text))])

    def done(self, index: int, answer: Answer) -> str:
        return self._chunk([ChunkChoice(index=index, delta=ChunkDelta(), finish_reason=answer.finish_reason)])

    def end(self, answers: list[Answer]):
        if self.include_usage:
            yield self._chunk([], usage_of(answers, shared_prompt=True))
        yield "data: [DONE]\n\n"


class CompletionChunks:
    """``text_completion`` events: each answer's text as it comes (after its prompt with ``echo``), its
    finish reason, the usage (if asked for) and ``[DONE]``."""

    def __init__(self, rid: str, model: str, echo: list[str] | None, n: int, include_usage: bool):
        self.rid, self.model, self.echo, self.n, self.include_usage = rid, model, echo, n, include_usage
        self.created = now()

    def _chunk(self, index: int, text: str, finish_reason: str | None = None) -> str:
        return sse_event(Completion(id=self.rid, created=self.created, model=self.model, usage=None, choices=[
            CompletionChoice(index=index, text=text, finish_reason=finish_reason)]).model_dump())

    def start(self):
        for k, prompt in enumerate(self.echo or ()):
            if prompt:
                yield self._chunk(k, prompt)

    def delta(self, index: int, text: str) -> str:
        return self._chunk(index, text)

    def done(self, index: int, answer: Answer) -> str:
        return self._chunk(index, "", answer.finish_reason)

    def end(self, answers: list[Answer]):
        if self.include_usage:
            yield sse_event(Completion(id=self.rid, created=self.created, model=self.model, choices=[],
                                       usage=usage_of(answers, shared_prompt=False, n=self.n)).model_dump())
        yield "data: [DONE]\n\n"

"""Waiting for a job's answers on behalf of an HTTP client, and what they cost (OpenAI's ``usage``).

A client that leaves (408) or a deadline that passes (504) abandons the job: the worker drops what
is left of it instead of answering nobody.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request

from unlearnkit.service.engine import Answer, Engine, Job
from unlearnkit.service.schemas import APIError, Usage

DISCONNECT_POLL_S = 0.25


async def check_still_wanted(engine: Engine, job: Job, request: Request | None) -> None:
    """Abandon ``job`` (the worker drops what is left of it) when its client has left (408) or its deadline has
    passed (504)."""
    if request is not None and await request.is_disconnected():
        job.abandon()
        raise APIError(408, "the client closed the connection", type="invalid_request_error", code="client_closed")
    if job.deadline is not None and time.perf_counter() > job.deadline:
        job.abandon()
        raise APIError(504, f"the request was not answered within {engine.settings.request_timeout_s:g} s; "
                       "retry, or ask for fewer tokens", type="server_error", code="timeout")


async def wait_for_answers(engine: Engine, job: Job, request: Request | None = None) -> list[Answer]:
    """Wait for the worker's answer; a client that leaves, or a deadline that passes, abandons the job
    (the worker drops what is left of it) instead of letting it run on for nobody."""
    future = engine.submit(job)
    waiting = asyncio.wrap_future(future)
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            await check_still_wanted(engine, job, request)
    except asyncio.CancelledError:  # the server cancelled the handler: the worker skips or discards it
        job.abandon()
        future.cancel()
        raise


def usage_of(answers: list[Answer], shared_prompt: bool, n: int = 1) -> Usage:
    """OpenAI's ``usage`` of a request's answers: the prompt counted once when every answer shares it (chat),
    else once per prompt (``n`` answers each)."""
    if shared_prompt:
        prompt = answers[0].prompt_tokens if answers else 0
    else:
        prompt = sum(a.prompt_tokens for a in answers[::max(1, n)])
    completion = sum(a.completion_tokens for a in answers)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

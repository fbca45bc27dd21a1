"""Request bodies: read within a size limit, parsed as strict JSON, validated against the request schemas.

Every failure is an ``APIError`` the client can act on (413 for an oversize body, 400 naming what is
wrong), never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from unlearnkit.service.schemas import APIError, validation_error


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing anything over ``limit`` bytes with a 413 (checked on the
    declared length first, then while reading, for chunked uploads). An oversize
    body is read and discarded (up to 64 MiB) so the client sees the 413 rather
    than a connection reset mid-upload."""
    declared = request.headers.get("content-length")
    over = False
    if declared is not None:
        try:
            over = int(declared) > limit
        except ValueError:
            raise APIError(400, "invalid Content-Length header", code="invalid_request") from None
    body = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if over:
            if seen > _DRAIN_CAP:
                break
            continue
        body += chunk
        if len(body) > limit:
            over, body = True, bytearray()
    if over:
        raise APIError(413, f"the request body is larger than this server's limit of {limit} bytes",
                       code="request_too_large")
    return bytes(body)


_DRAIN_CAP = 64 * 1024 * 1024


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads_json(raw: bytes | str) -> Any:
    """JSON as Python (NaN and Infinity refused); a 400 naming what is wrong otherwise."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({_short(exc)})", code="invalid_json") from None


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (a 400 for an empty body, bad JSON or another JSON value)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise APIError(400, "the request body is empty: send a JSON object", code="invalid_json")
    body = loads_json(raw)
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def validated(model_cls, body: dict[str, Any]):
    """``body`` as the pydantic ``model_cls``; a 400 naming the first bad parameter otherwise."""
    try:
        return model_cls.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None

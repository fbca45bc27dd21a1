"""The gateway's error responses: every error, whatever raised it, as an OpenAI-format JSON body.

Anything the client can fix is a 4xx naming the problem (a bad parameter is a 400 naming it, never
echoing its value); a registry that cannot be reached is a 503 with ``Retry-After``; anything else is
a 500 whose details go to the log only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from unlearnkit.service.engine import registry_unavailable
from unlearnkit.service.registry_base import RegistryUnavailable
from unlearnkit.service.schemas import APIError, error_body

log = logging.getLogger("unlearnkit.service")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into an ``{"error": {...}}`` response."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RegistryUnavailable)
    async def _registry_down(request: Request, exc: RegistryUnavailable):
        log.warning("%s", exc)
        return JSONResponse(registry_unavailable().body(), status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on "
                   f"{request.url.path}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(message, kind, None, None), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        """A 400 naming the first bad parameter and what is wrong with it (never echoing its value)."""
        first = (exc.errors() or [{}])[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")
               and not str(p).startswith("function-")]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid value")
        message = f"invalid value for '{param}': {msg}" if param else f"invalid request parameters: {msg}"
        return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_value"), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(error_body("internal error", "server_error", None, "internal_error"), status_code=500)

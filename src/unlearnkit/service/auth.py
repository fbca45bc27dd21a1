"""Who may call the gateway: the API key on the public routes, the admin token on the admin routes."""

from __future__ import annotations

import hmac
import re

from fastapi import Request

from unlearnkit.service.schemas import APIError
from unlearnkit.service.settings import ADMIN_TOKEN_ENV, ServeSettings

_ACTOR = re.compile(r"[^A-Za-z0-9_.@:+-]")


def bearer_matches(request: Request, secret: str) -> bool:
    """The request's ``Authorization: Bearer`` value equals ``secret`` (compared in constant time)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), secret.encode("utf-8"))


def check_api_key(request: Request, settings: ServeSettings) -> None:
    """A 401 unless the server needs no API key or the request carries it."""
    if settings.api_key and not bearer_matches(request, settings.api_key):
        raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                       type="invalid_request_error", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})


def check_admin(request: Request, settings: ServeSettings) -> str:
    """The actor the audit log records (``admin`` or ``admin:<x-unlearnkit-actor>``); a 403 when the admin API is
    off, a 401 without the admin token."""
    if not settings.admin_token:
        raise APIError(403, f"the admin API is disabled: start the server with {ADMIN_TOKEN_ENV} set",
                       type="permission_error", code="admin_disabled")
    if not bearer_matches(request, settings.admin_token):
        raise APIError(401, "invalid or missing admin token: send 'Authorization: Bearer <admin token>'",
                       type="authentication_error", code="invalid_admin_token",
                       headers={"WWW-Authenticate": "Bearer"})
    who = _ACTOR.sub("", request.headers.get("x-unlearnkit-actor", ""))[:100]
    return f"admin:{who}" if who else "admin"

"""What every target registry shares: the records it returns, the interface the gateway
uses, and ``open_registry`` choosing the backend from ``--db``.

* a path or ``sqlite:///path``: the embedded SQLite registry (``registry.py``), one
  gateway process;
* ``postgresql://…``: the PostgreSQL registry (``registry_postgres.py``), shared by
  any number of gateway replicas.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError, UnlearnkitError

CHANGE_ACTIONS = ("target.add", "target.update", "target.remove")
POSTGRES_SCHEMES = ("postgresql", "postgres")


class RegistryUnavailable(UnlearnkitError, RuntimeError):
    """The registry cannot be reached right now. The gateway answers 503 until it can:
    it never serves under a target list it cannot confirm is current."""


def prompt_hash(prompt: Any) -> str:
    """SHA-256 of a prompt (a string, or a message list as canonical JSON)."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False,
                                                              separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """The target list at one registry version."""

    version: int
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class GuardEvent:
    """A request a guard acted on (written to the audit log in batches)."""

    action: str  # e.g. "guard.refused_prompt", "guard.filtered_output", "guard.applied"
    request_id: str
    prompt_sha256: str
    targets: tuple[str, ...] = ()
    version: int | None = None
    detail: Mapping[str, Any] | None = None


@runtime_checkable
class TargetStore(Protocol):
    """The registry interface the gateway (app, engine, guard stack) relies on.

    ``version()`` is called before every batch: it must be cheap, and it raises
    ``RegistryUnavailable`` rather than return a number it cannot vouch for.
    Each change (``add``, ``remove``) is one transaction that bumps the version and
    appends its audit entries; the audit log is append-only, enforced by the database."""

    label: str

    def version(self) -> int: ...
    def snapshot(self) -> Snapshot: ...
    def list(self) -> tuple[int, list[dict[str, Any]]]: ...
    def get(self, name: str) -> Target | None: ...
    def audit(self, *, after: int = 0, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]: ...
    def count_audit(self, actions: Sequence[str] = CHANGE_ACTIONS) -> int: ...
    def add(self, targets: Iterable[Target | Mapping[str, Any] | str], actor: str = "admin",
            detail: Mapping[str, Any] | None = None) -> dict[str, Any]: ...
    def remove(self, names: Iterable[str], actor: str = "admin",
               detail: Mapping[str, Any] | None = None) -> dict[str, Any]: ...
    def record_events(self, events: Sequence[GuardEvent], actor: str = "gateway") -> None: ...
    def record(self, action: str, actor: str, detail: Mapping[str, Any] | None = None) -> None: ...
    def close(self) -> None: ...


# -- choosing the backend ----------------------------------------------------------------------


def is_postgres_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.split(":", 1)[0].lower() in POSTGRES_SCHEMES and "://" in db


def normalize_db(db: str | Path) -> str | Path:
    """``--db`` as the registry takes it: a PostgreSQL URL (a string) or a SQLite path."""
    if isinstance(db, Path):
        return db
    text = str(db).strip()
    if not text:
        raise ConfigError("--db is empty: give a SQLite file path or a postgresql:// URL")
    if is_postgres_url(text):
        return text
    if text.lower().startswith("sqlite:"):
        rest = text[len("sqlite:"):]
        if not rest.startswith("///"):
            raise ConfigError(f"'{text}' is not a SQLite URL: write sqlite:///relative.db or sqlite:////abs/path.db")
        return Path(rest[3:]) if rest[3:] else Path(":memory:")
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme:
        raise ConfigError(f"--db '{mask_url(text)}': unknown scheme '{scheme}://': give a SQLite file path "
                          "(or sqlite:///path) or a postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL")
    return Path(text)


def mask_url(url: str) -> str:
    """The URL with its password (in the authority or as ?password=) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        query = "&".join(("password=***" if q.lower().startswith("password=") else q)
                         for q in parts.query.split("&")) if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def db_label(db: str | Path) -> str:
    return mask_url(db) if is_postgres_url(db) else str(db)


def open_registry(db: str | Path) -> TargetStore:
    """The registry ``--db`` names (see the module docstring)."""
    db = normalize_db(db)
    if isinstance(db, str):
        from unlearnkit.service.registry_postgres import PostgresTargetRegistry

        return PostgresTargetRegistry(db)
    from unlearnkit.service.registry import TargetRegistry

    return TargetRegistry(db)

"""The live target registry and its audit log, in one SQLite file (the embedded default;
``registry_postgres.py`` is the one gateway replicas share).

* WAL journal with ``synchronous=FULL``: a change is on disk when its call returns,
  so a restart or a crash loses nothing that was acknowledged.
* One transaction per change: the target rows, the version number and the audit
  entry are written together or not at all.
* ``version`` increases with every change; the engine compares it per batch and
  re-reads the whole target list in one read transaction (a consistent snapshot).
* The ``audit`` table is append-only (triggers reject UPDATE and DELETE). Guard
  events store the SHA-256 of the prompt, never the prompt.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from unlearnkit.errors import ConfigError
from unlearnkit.service.registry_base import (  # noqa: F401  (re-exported: the records every registry returns)
    CHANGE_ACTIONS,
    GuardEvent,
    RegistryUnavailable,
    Snapshot,
    TargetStore,
    prompt_hash,
)
from unlearnkit.service.registry_sql import SqlRegistry

SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    version INTEGER,
    request_id TEXT,
    prompt_sha256 TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
INSERT OR IGNORE INTO meta(key, value) VALUES ('version', '0');
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '1');
"""


class TargetRegistry(SqlRegistry):
    """Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway).
    The reads and changes themselves are ``SqlRegistry``'s (``registry_sql.py``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.label = str(self.path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                         timeout=30.0)
            self._conn.row_factory = sqlite3.Row
            with self._lock:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the target registry '{self.path}' ({exc}): give a writable "
                              "SQLite file with --db") from exc

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> TargetRegistry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the shared operations (registry_sql.py) need --------------------------------
    def _read(self, fn):
        with self._lock:
            return fn(self._conn)

    @contextmanager
    def _write(self):
        """One write transaction: ``BEGIN IMMEDIATE`` takes SQLite's write lock at once,
        so the version read at its start is still the latest when it commits."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _consistent_read(self, conn):
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

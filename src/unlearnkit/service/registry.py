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

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from unlearnkit.data.targets import Target, as_target
from unlearnkit.errors import ConfigError
from unlearnkit.service.registry_base import (  # noqa: F401  (re-exported: the records every registry returns)
    CHANGE_ACTIONS,
    GuardEvent,
    RegistryUnavailable,
    Snapshot,
    TargetStore,
    prompt_hash,
)

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

class TargetRegistry:
    """Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway)."""

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

    def _transaction(self):
        return _Transaction(self._conn, self._lock)

    # -- reads -------------------------------------------------------------------
    def version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        return int(row["value"])

    def snapshot(self) -> Snapshot:
        """The version and the full target list, read in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                version = int(self._conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()["value"])
                rows = self._conn.execute("SELECT data FROM targets ORDER BY created_at, name").fetchall()
            finally:
                self._conn.execute("COMMIT")
        return Snapshot(version, tuple(Target.from_json(json.loads(r["data"])) for r in rows))

    def list(self) -> tuple[int, list[dict[str, Any]]]:
        """The version and every target with its bookkeeping fields."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                version = int(self._conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()["value"])
                rows = self._conn.execute(
                    "SELECT data, created_at, created_by, updated_at FROM targets ORDER BY created_at, name"
                ).fetchall()
            finally:
                self._conn.execute("COMMIT")
        out = []
        for r in rows:
            item = json.loads(r["data"])
            item.update(created_at=r["created_at"], created_by=r["created_by"], updated_at=r["updated_at"])
            out.append(item)
        return version, out

    def get(self, name: str) -> Target | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM targets WHERE name=?", (name,)).fetchone()
        return Target.from_json(json.loads(row["data"])) if row else None

    def audit(self, *, after: int = 0, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit WHERE id > ?"
        args: list[Any] = [after]
        if action:
            if action.endswith("*"):
                sql += " AND action LIKE ?"
                args.append(action[:-1] + "%")
            else:
                sql += " AND action = ?"
                args.append(action)
        sql += " ORDER BY id LIMIT ?"
        args.append(max(1, min(int(limit), 10_000)))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [dict(r, detail=json.loads(r["detail"])) for r in rows]

    def count_audit(self, actions: Sequence[str] = CHANGE_ACTIONS) -> int:
        marks = ",".join("?" for _ in actions)
        with self._lock:
            row = self._conn.execute(f"SELECT COUNT(*) AS n FROM audit WHERE action IN ({marks})", tuple(actions)).fetchone()
        return int(row["n"])

    # -- changes (one transaction each) ------------------------------------------
    def add(self, targets: Iterable[Target | Mapping[str, Any] | str], actor: str = "admin",
            detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add or replace targets by name, in one transaction; returns the new version
        and which names were added, updated or unchanged."""
        items = [as_target(t) for t in targets]
        added, updated, unchanged = [], [], []
        now = time.time()
        with self._transaction() as conn:
            version = _bump(conn)
            for t in items:
                data = json.dumps(t.to_json(), ensure_ascii=False, sort_keys=True)
                row = conn.execute("SELECT data FROM targets WHERE name=?", (t.name,)).fetchone()
                if row is None:
                    conn.execute("INSERT INTO targets(name, data, created_at, created_by, updated_at) "
                                 "VALUES (?,?,?,?,?)", (t.name, data, now, actor, now))
                    added.append(t.name)
                    action = "target.add"
                elif row["data"] != data:
                    conn.execute("UPDATE targets SET data=?, updated_at=? WHERE name=?", (data, now, t.name))
                    updated.append(t.name)
                    action = "target.update"
                else:
                    unchanged.append(t.name)
                    continue
                _audit(conn, now, actor, action, t.name, version, detail=dict(detail or {}, target=t.to_json()))
            if not added and not updated:
                raise _Rollback()
        if not added and not updated:
            version = self.version()
        return {"version": version, "added": added, "updated": updated, "unchanged": unchanged}

    def remove(self, names: Iterable[str], actor: str = "admin",
               detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Remove targets by name (or alias), in one transaction."""
        names = list(names)
        removed, missing = [], []
        now = time.time()
        with self._transaction() as conn:
            version = _bump(conn)
            for name in names:
                row = conn.execute("SELECT name, data FROM targets WHERE name=?", (name,)).fetchone()
                if row is None:
                    row = _by_alias(conn, name)
                if row is None:
                    missing.append(name)
                    continue
                conn.execute("DELETE FROM targets WHERE name=?", (row["name"],))
                removed.append(row["name"])
                _audit(conn, now, actor, "target.remove", row["name"], version,
                       detail=dict(detail or {}, target=json.loads(row["data"])))
            if not removed:
                raise _Rollback()
        if not removed:
            version = self.version()
        return {"version": version, "removed": removed, "missing": missing}

    def record_events(self, events: Sequence[GuardEvent], actor: str = "gateway") -> None:
        """Append guard events (one transaction for the batch)."""
        if not events:
            return
        now = time.time()
        with self._transaction() as conn:
            for e in events:
                detail = dict(e.detail or {}, targets=list(e.targets))
                conn.execute(
                    "INSERT INTO audit(ts, actor, action, target, version, request_id, prompt_sha256, detail) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (now, actor, e.action, ",".join(e.targets) or None, e.version, e.request_id, e.prompt_sha256,
                     json.dumps(detail, ensure_ascii=False, sort_keys=True)),
                )

    def record(self, action: str, actor: str, detail: Mapping[str, Any] | None = None) -> None:
        """Append one free-form audit entry (e.g. server start)."""
        with self._transaction() as conn:
            _audit(conn, time.time(), actor, action, None, None, detail=dict(detail or {}))


class _Rollback(Exception):
    """Raised inside a transaction to undo it quietly (nothing changed)."""


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock):
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
        finally:
            self.lock.release()
        return exc_type is _Rollback


def _bump(conn: sqlite3.Connection) -> int:
    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")
    return int(conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()["value"])


def _by_alias(conn: sqlite3.Connection, name: str):
    for row in conn.execute("SELECT name, data FROM targets"):
        if name in json.loads(row["data"]).get("aliases", ()):
            return row
    return None


def _audit(conn, ts, actor, action, target, version, detail) -> None:
    conn.execute(
        "INSERT INTO audit(ts, actor, action, target, version, detail) VALUES (?,?,?,?,?,?)",
        (ts, actor, action, target, version, json.dumps(detail, ensure_ascii=False, sort_keys=True)),
    )

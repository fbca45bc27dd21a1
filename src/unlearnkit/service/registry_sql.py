"""The target registry's operations, written once for both backends: the embedded SQLite
registry (``registry.py``) and the PostgreSQL one replicas share (``registry_postgres.py``).

Both keep the same three tables (``targets``, ``meta`` holding the version, the
append-only ``audit``). What differs is left to the backend, a subclass of
``SqlRegistry``:

* ``MARK``: its parameter placeholder; the SQL here is written with ``?``;
* ``_read(fn)``: run ``fn(conn)`` for a read (locking, reconnecting);
* ``_write()``: a context manager yielding the connection inside one write transaction;
* ``_consistent_read(conn)``: a context manager making several reads one snapshot;
* ``_store_version(conn, version)``: write the new version inside that transaction
  (PostgreSQL also announces it);
* ``_saw(version)``: told each version read or written (PostgreSQL's listener cache).

Rows are read by column name (``row["data"]``, ``dict(row)``): ``sqlite3.Row`` and
psycopg's ``dict_row`` both allow it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, closing
from functools import lru_cache
from typing import Any, Callable, TypeVar

from unlearnkit.data.targets import Target, as_target
from unlearnkit.service.registry_base import CHANGE_ACTIONS, GuardEvent, Snapshot

T = TypeVar("T")
AUDIT_LIMIT = 10_000

READ_VERSION = "SELECT value FROM meta WHERE key='version'"
INSERT_AUDIT = "INSERT INTO audit(ts, actor, action, target, version, detail) VALUES (?,?,?,?,?,?)"
INSERT_EVENT = ("INSERT INTO audit(ts, actor, action, target, version, request_id, prompt_sha256, detail) "
                "VALUES (?,?,?,?,?,?,?,?)")


@lru_cache(maxsize=None)
def _sql(text: str, mark: str) -> str:
    """``text`` with its ``?`` placeholders written as the backend's ``mark``."""
    return text if mark == "?" else text.replace("?", mark)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def read_version(conn) -> int:
    return int(conn.execute(READ_VERSION).fetchone()["value"])


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching ``prefix`` literally, then anything (escape character ``\\``)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _by_alias(conn, name: str):
    """The first target (in list order) that has ``name`` among its aliases, or None."""
    for row in conn.execute("SELECT name, data FROM targets ORDER BY created_at, name"):
        if name in json.loads(row["data"]).get("aliases", ()):
            return row
    return None


def _audit(conn, mark: str, ts, actor, action, target, version, detail) -> None:
    conn.execute(_sql(INSERT_AUDIT, mark), (ts, actor, action, target, version, _json(detail)))


class SqlRegistry:
    """Reads and changes over the shared tables; see the module docstring for what a
    backend supplies. Each change is one transaction that writes the target rows, the
    audit entries and the new version together; a call that changes nothing leaves the
    version as it was."""

    MARK = "?"
    label: str

    # -- what a backend supplies ---------------------------------------------------------
    def _read(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _consistent_read(self, conn) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _store_version(self, conn, version: int) -> None:
        conn.execute(self._q("UPDATE meta SET value=? WHERE key='version'"), (str(version),))

    def _saw(self, version: int) -> None:
        """Called with each version read in a snapshot or written by a change."""

    def _q(self, text: str) -> str:
        return _sql(text, self.MARK)

    # -- reads ---------------------------------------------------------------------------
    def version(self) -> int:
        return self._read(read_version)

    def _snapshot_rows(self, conn, columns: str):
        with self._consistent_read(conn):
            version = read_version(conn)
            rows = conn.execute(f"SELECT {columns} FROM targets ORDER BY created_at, name").fetchall()
        return version, rows

    def snapshot(self) -> Snapshot:
        """The version and the full target list, read in one transaction."""
        version, rows = self._read(lambda c: self._snapshot_rows(c, "data"))
        self._saw(version)
        return Snapshot(version, tuple(Target.from_json(json.loads(r["data"])) for r in rows))

    def list(self) -> tuple[int, list[dict[str, Any]]]:
        """The version and every target with its bookkeeping fields."""
        version, rows = self._read(lambda c: self._snapshot_rows(c, "data, created_at, created_by, updated_at"))
        out = []
        for r in rows:
            item = json.loads(r["data"])
            item.update(created_at=r["created_at"], created_by=r["created_by"], updated_at=r["updated_at"])
            out.append(item)
        return version, out

    def get(self, name: str) -> Target | None:
        sql = self._q("SELECT data FROM targets WHERE name=?")
        row = self._read(lambda c: c.execute(sql, (name,)).fetchone())
        return Target.from_json(json.loads(row["data"])) if row else None

    def audit(self, *, after: int = 0, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        """Audit entries after id ``after``, oldest first; ``action`` is a name, or a
        prefix ending in ``*`` (``guard.*``)."""
        sql = "SELECT * FROM audit WHERE id > ?"
        args: list[Any] = [int(after)]
        if action:
            if action.endswith("*"):
                sql += " AND action LIKE ? ESCAPE '\\'"
                args.append(_like_prefix(action[:-1]))
            else:
                sql += " AND action = ?"
                args.append(action)
        sql += " ORDER BY id LIMIT ?"
        args.append(max(1, min(int(limit), AUDIT_LIMIT)))
        sql = self._q(sql)
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        return [dict(r, detail=json.loads(r["detail"])) for r in rows]

    def count_audit(self, actions: Sequence[str] = CHANGE_ACTIONS) -> int:
        actions = list(actions)
        if not actions:
            return 0
        sql = self._q(f"SELECT COUNT(*) AS n FROM audit WHERE action IN ({','.join('?' for _ in actions)})")
        row = self._read(lambda c: c.execute(sql, actions).fetchone())
        return int(row["n"])

    # -- changes (one transaction each) --------------------------------------------------
    def add(self, targets: Iterable[Target | Mapping[str, Any] | str], actor: str = "admin",
            detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add or replace targets by name, in one transaction; returns the new version
        and which names were added, updated or unchanged."""
        items = [as_target(t) for t in targets]
        added, updated, unchanged = [], [], []
        now = time.time()
        with self._write() as conn:
            current = read_version(conn)
            version = current + 1
            for t in items:
                data = _json(t.to_json())
                row = conn.execute(self._q("SELECT data FROM targets WHERE name=?"), (t.name,)).fetchone()
                if row is None:
                    conn.execute(self._q("INSERT INTO targets(name, data, created_at, created_by, updated_at) "
                                         "VALUES (?,?,?,?,?)"), (t.name, data, now, actor, now))
                    added.append(t.name)
                    action = "target.add"
                elif row["data"] != data:
                    conn.execute(self._q("UPDATE targets SET data=?, updated_at=? WHERE name=?"), (data, now, t.name))
                    updated.append(t.name)
                    action = "target.update"
                else:
                    unchanged.append(t.name)
                    continue
                _audit(conn, self.MARK, now, actor, action, t.name, version, dict(detail or {}, target=t.to_json()))
            if added or updated:
                self._store_version(conn, version)
            else:
                version = current
        if added or updated:
            self._saw(version)
        return {"version": version, "added": added, "updated": updated, "unchanged": unchanged}

    def remove(self, names: Iterable[str], actor: str = "admin",
               detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Remove targets by name (or alias), in one transaction."""
        names = list(names)
        removed, missing = [], []
        now = time.time()
        with self._write() as conn:
            current = read_version(conn)
            version = current + 1
            for name in names:
                row = conn.execute(self._q("SELECT name, data FROM targets WHERE name=?"), (name,)).fetchone()
                if row is None:
                    row = _by_alias(conn, name)
                if row is None:
                    missing.append(name)
                    continue
                conn.execute(self._q("DELETE FROM targets WHERE name=?"), (row["name"],))
                removed.append(row["name"])
                _audit(conn, self.MARK, now, actor, "target.remove", row["name"], version,
                       dict(detail or {}, target=json.loads(row["data"])))
            if removed:
                self._store_version(conn, version)
            else:
                version = current
        if removed:
            self._saw(version)
        return {"version": version, "removed": removed, "missing": missing}

    def record_events(self, events: Sequence[GuardEvent], actor: str = "gateway") -> None:
        """Append guard events (one transaction for the batch); the prompt is stored as its hash."""
        if not events:
            return
        now = time.time()
        rows = [(now, actor, e.action, ",".join(e.targets) or None, e.version, e.request_id, e.prompt_sha256,
                 _json(dict(e.detail or {}, targets=list(e.targets)))) for e in events]
        with self._write() as conn, closing(conn.cursor()) as cur:
            cur.executemany(self._q(INSERT_EVENT), rows)

    def record(self, action: str, actor: str, detail: Mapping[str, Any] | None = None) -> None:
        """Append one free-form audit entry (e.g. server start)."""
        with self._write() as conn:
            _audit(conn, self.MARK, time.time(), actor, action, None, None, dict(detail or {}))

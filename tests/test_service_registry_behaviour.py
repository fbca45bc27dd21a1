"""What every target registry does, run against each backend: the embedded SQLite file
and PostgreSQL (a real server on loopback, started for the session; those cases skip
only where its binaries or psycopg are missing). What only one backend does is tested
in ``test_service_registry.py`` (SQLite) and ``test_service_registry_postgres.py``."""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from unlearnkit.data.targets import Target
from unlearnkit.service import registry_sql
from unlearnkit.service.registry import TargetRegistry
from unlearnkit.service.registry_base import GuardEvent, TargetStore, prompt_hash


@dataclass
class Backend:
    """One database and how to reach it: through the registry, or as any other client would."""

    open: Callable[[], TargetStore]  # another registry on the same database
    raw: Callable[[], Any]  # a context manager: a plain autocommit connection
    error: type[Exception]  # what that connection raises for a refused statement
    rewrites: tuple[str, ...]  # statements that would rewrite the audit log


def _sqlite(tmp_path) -> Backend:
    db = tmp_path / "r.db"

    @contextmanager
    def raw():
        with closing(sqlite3.connect(db, isolation_level=None)) as conn:
            yield conn

    return Backend(lambda: TargetRegistry(db), raw, sqlite3.DatabaseError,
                   ("UPDATE audit SET actor='mallory'", "DELETE FROM audit"))


def _postgres(url: str) -> Backend:
    psycopg = pytest.importorskip("psycopg")
    from unlearnkit.service.registry_postgres import PostgresTargetRegistry

    return Backend(lambda: PostgresTargetRegistry(url), lambda: psycopg.connect(url, autocommit=True), psycopg.Error,
                   ("UPDATE audit SET actor='mallory'", "DELETE FROM audit", "TRUNCATE audit",
                    "DELETE FROM audit WHERE id < 0"))  # refused even when no row matches


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> Backend:
    return _sqlite(tmp_path) if request.param == "sqlite" else _postgres(request.getfixturevalue("pg_url"))


@pytest.fixture
def registry(backend):
    with backend.open() as reg:
        yield reg


def test_add_list_remove_with_versions(registry):
    assert registry.version() == 0 and registry.snapshot().targets == ()
    r = registry.add([Target("Ann Vel", aliases=("A. Vel",)), {"name": "Bo Tarn", "facts": ["Bo is 40."]}], "admin:x")
    assert r == {"version": 1, "added": ["Ann Vel", "Bo Tarn"], "updated": [], "unchanged": []}
    # a bare name replaces the target (its aliases go); the same again changes nothing, same version
    assert registry.add(["Ann Vel"], "admin")["updated"] == ["Ann Vel"]
    assert registry.version() == 2 and registry.get("Ann Vel").aliases == ()
    assert registry.add(["Ann Vel"], "admin") == {"version": 2, "added": [], "updated": [], "unchanged": ["Ann Vel"]}
    version, items = registry.list()
    assert version == 2 and [t["name"] for t in items] == ["Ann Vel", "Bo Tarn"]
    assert items[0]["created_by"] == "admin:x" and items[1]["facts"] == ["Bo is 40."]
    assert registry.remove(["nobody"]) == {"version": 2, "removed": [], "missing": ["nobody"]}
    assert registry.remove(["Bo Tarn"])["removed"] == ["Bo Tarn"]
    snap = registry.snapshot()
    assert snap.version == 3 and [t.name for t in snap.targets] == ["Ann Vel"]
    assert registry.get("Bo Tarn") is None and registry.count_audit() == 4


def test_remove_by_alias(registry):
    registry.add([Target("Cyra Holm", aliases=("C. Holm",))])
    assert registry.remove(["C. Holm"])["removed"] == ["Cyra Holm"]


def test_reopen_keeps_targets_and_audit(backend):
    with backend.open() as reg:
        reg.add([Target("Eli Marr", aliases=("E. M.",), description="d", facts=("f",))], "admin")
    with backend.open() as reg:
        (t,) = reg.snapshot().targets
        assert (t.name, t.aliases, t.description, t.facts) == ("Eli Marr", ("E. M.",), "d", ("f",))
        assert reg.version() == 1 and reg.count_audit() == 1


def test_audit_is_append_only_in_the_database_and_stores_hashes(registry, backend):
    registry.add(["Fen Ro"], "admin")
    prompt = [{"role": "user", "content": "secret question about Fen Ro"}]
    registry.record_events([GuardEvent("guard.refused_prompt", "req-1", prompt_hash(prompt), ("Fen Ro",), 1)])
    rows = registry.audit()
    assert [r["action"] for r in rows] == ["target.add", "guard.refused_prompt"]
    assert rows[1]["prompt_sha256"] == prompt_hash(prompt) and len(rows[1]["prompt_sha256"]) == 64
    assert "secret question" not in json.dumps(rows)
    # Another client with full rights on the tables still cannot rewrite history.
    with backend.raw() as conn:
        for sql in backend.rewrites:
            with pytest.raises(backend.error, match="append-only"):
                conn.execute(sql)
        assert len(registry.audit()) == 2
        conn.execute("INSERT INTO audit(ts, actor, action) VALUES (0, 'x', 'note')")  # appending is allowed
    assert len(registry.audit()) == 3


def test_audit_pagination_and_filters(registry):
    for i in range(7):
        registry.add([f"p{i}"], "admin")
    registry.record_events([GuardEvent("guard.applied", f"r{i}", "0" * 64, (f"p{i}",), i + 1) for i in range(5)])
    registry.remove(["p0", "p1"], "admin")
    everything = registry.audit(limit=1000)
    assert len(everything) == 7 + 5 + 2
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    pages, after = [], 0
    while True:
        page = registry.audit(after=after, limit=4)
        if not page:
            break
        assert len(page) <= 4
        pages.append(page)
        after = page[-1]["id"]
    assert [r["id"] for p in pages for r in p] == ids and len(pages) == 4
    assert [r["action"] for r in registry.audit(action="target.remove")] == ["target.remove"] * 2
    assert len(registry.audit(action="target.*", limit=1000)) == 9
    assert len(registry.audit(action="guard.*", after=everything[8]["id"])) == 3
    assert registry.audit(action="target%") == []  # a literal filter, not a pattern
    assert registry.audit(action="guard_*") == []  # the prefix is literal too: '_' is not a wildcard
    assert registry.count_audit() == 9 and registry.count_audit(["guard.applied"]) == 5


def test_a_failed_change_leaves_nothing_behind(registry, monkeypatch):
    registry.add(["Kept One"], "admin")
    real, calls = registry_sql._audit, []

    def failing(conn, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(conn, *args, **kw)

    monkeypatch.setattr(registry_sql, "_audit", failing)
    with pytest.raises(RuntimeError):
        registry.add(["Gil Pratt", "Hal Ruck"], "admin")  # fails after Gil Pratt's rows were written
    monkeypatch.setattr(registry_sql, "_audit", real)
    assert registry.version() == 1 and [t.name for t in registry.snapshot().targets] == ["Kept One"]
    assert [r["target"] for r in registry.audit()] == ["Kept One"]
    registry.add(["Next One"], "admin")  # the connection is usable after the rollback
    assert registry.version() == 2


def test_snapshots_are_consistent_under_concurrent_writes(registry, backend):
    """The writer adds t1..tN one transaction each; every snapshot read meanwhile at version v,
    through the writer's own registry (other threads) or another one on the same database
    (another replica), holds exactly t1..tv."""
    n = 60
    stop = threading.Event()
    bad: list = []
    seen: list = []
    with backend.open() as other:

        def read(reg):
            while not stop.is_set():
                snap = reg.snapshot()
                seen.append(snap.version)
                if [t.name for t in snap.targets] != [f"t{i}" for i in range(1, snap.version + 1)]:
                    bad.append(snap)

        threads = [threading.Thread(target=read, args=(reg,)) for reg in (registry, registry, other)]
        for t in threads:
            t.start()
        for i in range(1, n + 1):
            registry.add([f"t{i}"], "writer")
        stop.set()
        for t in threads:
            t.join()
        assert not bad and seen
        assert registry.version() == n and registry.count_audit() == n
        assert other.version() == n and other.count_audit() == n

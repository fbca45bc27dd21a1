"""The PostgreSQL target registry that gateway replicas share: the SQLite registry's
behaviour, an audit log the database keeps append-only, changes seen by every replica
within 1 s, a clear error for an unreachable URL, and a lost connection failing closed
(503) until it is back.

A real PostgreSQL server runs on loopback in a temporary directory for the session
(``unlearnkit.service.temp_postgres``); the tests skip only where its binaries are missing.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError
from unlearnkit.service.registry_base import (
    GuardEvent,
    RegistryUnavailable,
    TargetStore,
    mask_url,
    open_registry,
    prompt_hash,
)
from unlearnkit.service.temp_postgres import TempPostgres, free_port, missing_reason

psycopg = pytest.importorskip("psycopg")
from unlearnkit.service.registry_postgres import PostgresTargetRegistry  # noqa: E402

ADMIN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def wait_for(predicate, timeout: float, interval: float = 0.01):
    """Poll until ``predicate()`` is truthy; returns (value, seconds waited)."""
    t0 = time.monotonic()
    while True:
        value = predicate()
        if value or time.monotonic() - t0 > timeout:
            return value, time.monotonic() - t0
        time.sleep(interval)


@pytest.fixture(scope="session")
def postgres():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = TempPostgres().start()
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres):
    return postgres.create_database("t_" + uuid.uuid4().hex[:12])


@pytest.fixture
def registry(pg_url):
    with PostgresTargetRegistry(pg_url) as reg:
        yield reg


# -- the same behaviour as the SQLite registry ---------------------------------------------------


def test_add_list_remove_with_versions(registry):
    assert registry.version() == 0 and registry.snapshot().targets == ()
    r = registry.add([Target("Ann Vel", aliases=("A. Vel",)), {"name": "Bo Tarn", "facts": ["Bo is 40."]}], "admin:x")
    assert r == {"version": 1, "added": ["Ann Vel", "Bo Tarn"], "updated": [], "unchanged": []}
    assert registry.add(["Ann Vel"], "admin")["updated"] == ["Ann Vel"]  # a bare name replaces the target
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


def test_open_registry_chooses_the_backend(pg_url, tmp_path):
    from unlearnkit.service.registry import TargetRegistry

    with open_registry(pg_url) as reg:
        assert isinstance(reg, PostgresTargetRegistry) and isinstance(reg, TargetStore)
    with open_registry(f"sqlite:///{tmp_path / 'r.db'}") as reg:
        assert isinstance(reg, TargetRegistry) and isinstance(reg, TargetStore) and reg.path == tmp_path / "r.db"
    with pytest.raises(ConfigError, match="unknown scheme 'mysql://'"):
        open_registry("mysql://u:pw@host/db")


def test_reopen_keeps_targets_and_audit(pg_url):
    with PostgresTargetRegistry(pg_url) as reg:
        reg.add([Target("Eli Marr", aliases=("E. M.",), description="d", facts=("f",))], "admin")
    with PostgresTargetRegistry(pg_url) as reg:
        (t,) = reg.snapshot().targets
        assert (t.name, t.aliases, t.description, t.facts) == ("Eli Marr", ("E. M.",), "d", ("f",))
        assert reg.version() == 1 and reg.count_audit() == 1


def test_audit_is_append_only_in_the_database(registry, pg_url):
    registry.add(["Fen Ro"], "admin")
    prompt = [{"role": "user", "content": "secret question about Fen Ro"}]
    registry.record_events([GuardEvent("guard.refused_prompt", "req-1", prompt_hash(prompt), ("Fen Ro",), 1)])
    rows = registry.audit()
    assert [r["action"] for r in rows] == ["target.add", "guard.refused_prompt"]
    assert rows[1]["prompt_sha256"] == prompt_hash(prompt) and "secret question" not in json.dumps(rows)
    # Another client with full rights on the tables still cannot rewrite history.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for sql in ("UPDATE audit SET actor='mallory'", "DELETE FROM audit", "TRUNCATE audit",
                    "DELETE FROM audit WHERE id < 0"):  # refused even when no row matches
            with pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(sql)
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
    assert registry.count_audit() == 9 and registry.count_audit(["guard.applied"]) == 5


def test_a_failed_change_leaves_nothing_behind(registry, monkeypatch):
    from unlearnkit.service import registry_sql as module

    registry.add(["Kept One"], "admin")
    real, calls = module._audit, []

    def failing(conn, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(conn, *args, **kw)

    monkeypatch.setattr(module, "_audit", failing)
    with pytest.raises(RuntimeError):
        registry.add(["Gil Pratt", "Hal Ruck"], "admin")
    monkeypatch.setattr(module, "_audit", real)
    assert registry.version() == 1 and [t.name for t in registry.snapshot().targets] == ["Kept One"]
    assert [r["target"] for r in registry.audit()] == ["Kept One"]
    registry.add(["Next One"], "admin")  # the connection is usable after the rollback
    assert registry.version() == 2


def test_snapshots_are_consistent_across_replicas_under_concurrent_writes(pg_url):
    """One replica adds t1..tN one transaction each; every snapshot another replica reads
    at version v holds exactly t1..tv."""
    n = 40
    with PostgresTargetRegistry(pg_url) as writer, PostgresTargetRegistry(pg_url) as reader:
        stop, bad, seen = threading.Event(), [], []

        def read():
            while not stop.is_set():
                snap = reader.snapshot()
                seen.append(snap.version)
                if [t.name for t in snap.targets] != [f"t{i}" for i in range(1, snap.version + 1)]:
                    bad.append(snap)

        thread = threading.Thread(target=read)
        thread.start()
        for i in range(1, n + 1):
            writer.add([f"t{i}"], "writer")
        stop.set()
        thread.join()
        assert not bad and seen
        assert reader.version() == n and reader.count_audit() == n


# -- replicas ------------------------------------------------------------------------------------


def test_two_registries_on_one_database_see_each_others_changes_within_a_second(pg_url):
    # Heartbeats far apart: only the NOTIFY can bring a change within the second.
    kw = dict(heartbeat_s=60, max_staleness_s=120)
    with PostgresTargetRegistry(pg_url, **kw) as a, PostgresTargetRegistry(pg_url, **kw) as b:
        assert a.listening and b.listening
        delays = []
        for k in range(3):
            v = a.add([f"from-a-{k}"], "admin:a")["version"]
            seen, delay = wait_for(lambda v=v: b.version() >= v, timeout=1.0)
            assert seen, f"replica b did not see version {v} within 1 s"
            delays.append(delay)
            v = b.remove([f"from-a-{k}"], "admin:b")["version"]
            seen, delay = wait_for(lambda v=v: a.version() >= v, timeout=1.0)
            assert seen, f"replica a did not see version {v} within 1 s"
            delays.append(delay)
        assert max(delays) < 1.0
        assert [t.name for t in a.snapshot().targets] == [] and b.count_audit() == 6


def _server(db, model):
    from unlearnkit.service import ServeSettings, start_background_server

    return start_background_server(ServeSettings(guard="prompt", db_path=db, admin_token=ADMIN, log_level="warning",
                                                 default_max_tokens=4, max_tokens_limit=16), model)


def _chat(url: str, text: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": text}], "max_tokens": 4})


def test_gateway_replicas_enforce_a_change_made_through_another_within_a_second(pg_url):
    from unlearnkit.models.tiny import load_tiny
    from unlearnkit.service.settings import DEFAULT_REFUSAL

    with _server(pg_url, load_tiny()) as one, _server(pg_url, load_tiny()) as two:
        assert _chat(two.url, "Tell me about Quorra Vantablack.").json()["choices"][0]["message"]["content"] \
            != DEFAULT_REFUSAL
        r = httpx.post(one.url + "/admin/targets", headers=AUTH, json={"name": "Quorra Vantablack"})
        assert r.status_code == 201

        def enforced():
            return httpx.get(two.url + "/admin/stats", headers=AUTH).json()["version"] == r.json()["version"]

        seen, delay = wait_for(enforced, timeout=1.0, interval=0.02)
        assert seen, "replica two's guard did not follow the change within 1 s"
        answer = _chat(two.url, "Tell me about Quorra Vantablack.")
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == DEFAULT_REFUSAL
        audit = httpx.get(one.url + "/admin/audit", headers=AUTH, params={"action": "guard.*"}).json()["data"]
        assert [e["action"] for e in audit] == ["guard.refused_prompt"]  # written by replica two, read via one


# -- failures ------------------------------------------------------------------------------------


def test_an_unreachable_url_is_a_clear_error_with_the_password_masked():
    port = free_port()
    url = f"postgresql://unlearn:s3cr3t-pw@127.0.0.1:{port}/registry"
    with pytest.raises(ConfigError) as info:
        PostgresTargetRegistry(url, connect_timeout=2)
    message = str(info.value)
    assert f"postgresql://unlearn:***@127.0.0.1:{port}/registry" in message
    assert "s3cr3t-pw" not in message and "Connection refused" in message
    assert "check that the server runs" in message and "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in message
    assert mask_url("postgresql://u@h/db?password=x&sslmode=require") == "postgresql://u@h/db?password=***&sslmode=require"


def test_serve_with_an_unreachable_url_fails_before_loading_anything(monkeypatch):
    from typer.testing import CliRunner

    from unlearnkit import cli
    from unlearnkit.service.settings import ADMIN_TOKEN_ENV

    def no_model(*a, **kw):  # pragma: no cover - reached only if the registry check were skipped
        raise AssertionError("the model was loaded before the registry was checked")

    monkeypatch.setattr("unlearnkit.models.loading.load_model", no_model)
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "token-0123456789abcdef")
    port = free_port()
    result = CliRunner().invoke(cli.app, ["serve", "--model", "tiny", "--guard", "none",
                                          "--db", f"postgresql://gw:hunter22@127.0.0.1:{port}/reg"])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert f"postgresql://gw:***@127.0.0.1:{port}/reg" in out and "hunter22" not in out
    assert "Traceback" not in result.output


def test_a_lost_connection_fails_closed_then_reconnects(postgres, pg_url):
    from unlearnkit.models.tiny import load_tiny

    server = _server(pg_url, load_tiny())
    registry = server.app.state.registry
    try:
        assert httpx.post(server.url + "/admin/targets", headers=AUTH, json={"name": "Ilsa Brandt"}).status_code == 201
        assert _chat(server.url, "What is 2 + 2?").status_code == 200

        # 1. The server kills every connection (a failover, an admin): the registry reconnects by itself.
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                          (pg_url.rsplit("/", 1)[1],))
        assert _chat(server.url, "What is 2 + 2?").status_code == 200
        back, _ = wait_for(lambda: registry.listening, timeout=5.0)
        assert back

        # 2. The server is down: chat, admin and health answer 503 in OpenAI's format, never a stale answer.
        postgres.stop("immediate")
        down, _ = wait_for(lambda: not registry.listening, timeout=5.0)
        assert down
        with pytest.raises(RegistryUnavailable, match=r"127\.0\.0\.1"):
            registry.version()
        r = _chat(server.url, "What is 2 + 2?")
        assert r.status_code == 503 and r.headers.get("retry-after") == "1"
        assert r.json()["error"]["code"] == "registry_unavailable" and r.json()["error"]["type"] == "server_error"
        assert str(postgres.port) not in r.text  # the registry's address is not disclosed to clients
        r = httpx.post(server.url + "/admin/targets", headers=AUTH, json={"name": "Nope"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "registry_unavailable"
        assert httpx.get(server.url + "/health").json()["status"] == "registry_unavailable"

        # 3. It comes back: the gateway serves again, and changes propagate again.
        postgres.start()
        ok, _ = wait_for(lambda: _chat(server.url, "What is 2 + 2?").status_code == 200, timeout=15.0, interval=0.2)
        assert ok
        relistening, _ = wait_for(lambda: registry.listening, timeout=10.0)
        assert relistening
        assert httpx.get(server.url + "/health").status_code == 200
        with PostgresTargetRegistry(pg_url) as other:
            v = other.add(["After Restart"], "admin:other")["version"]
        seen, _ = wait_for(lambda: httpx.get(server.url + "/admin/stats", headers=AUTH).json()["version"] == v,
                           timeout=1.0, interval=0.02)
        assert seen
        names = [t["name"] for t in httpx.get(server.url + "/admin/targets", headers=AUTH).json()["data"]]
        assert names == ["Ilsa Brandt", "After Restart"]
    finally:
        if not postgres.running():
            postgres.start()
        server.stop()


def test_tables_dropped_under_a_running_gateway_fail_closed_and_are_not_recreated(pg_url, caplog):
    from unlearnkit.models.tiny import load_tiny

    def has_meta():
        with psycopg.connect(pg_url, autocommit=True) as conn:
            return conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]

    with _server(pg_url, load_tiny()) as server:
        registry = server.app.state.registry
        assert httpx.post(server.url + "/admin/targets", headers=AUTH, json={"name": "Ilsa Brandt"}).status_code == 201
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TABLE targets, meta, audit")
        gone, _ = wait_for(lambda: not registry.listening, timeout=5.0)
        assert gone
        with pytest.raises(RegistryUnavailable, match=r"lost its tables \(relation \"meta\" does not exist\).*restore"):
            registry.version()
        with pytest.raises(RegistryUnavailable, match="lost its tables"):
            registry.add(["Nope"], "admin")
        r = _chat(server.url, "Tell me about Ilsa Brandt.")  # never answered under an empty list
        assert r.status_code == 503 and r.json()["error"]["code"] == "registry_unavailable"
        assert httpx.get(server.url + "/admin/targets", headers=AUTH).status_code == 503
        assert httpx.get(server.url + "/health").status_code == 503
        assert not has_meta()  # the running gateway did not re-create an empty registry
        assert any("lost its tables" in rec.getMessage() for rec in caplog.records)

        # Opening the registry again (an operator's decision) creates empty tables: serving resumes.
        PostgresTargetRegistry(pg_url, listen=False).close()
        ok, _ = wait_for(lambda: _chat(server.url, "What is 2 + 2?").status_code == 200, timeout=10.0, interval=0.2)
        assert ok and has_meta()


def test_settings_keep_a_postgres_url_and_mask_it(tmp_path):
    from pathlib import Path

    from unlearnkit.service.settings import ServeSettings

    s = ServeSettings(db_path="postgresql://gw:pw-123456@db.internal:5432/reg")
    assert s.db_path == "postgresql://gw:pw-123456@db.internal:5432/reg"
    assert s.db_label == "postgresql://gw:***@db.internal:5432/reg"
    assert ServeSettings(db_path=f"sqlite:///{tmp_path}/r.db").db_path == Path(f"{tmp_path}/r.db")
    assert ServeSettings(db_path="relative/r.db").db_path == Path("relative/r.db")
    with pytest.raises(ConfigError, match="unknown scheme"):
        ServeSettings(db_path="redis://host/0")

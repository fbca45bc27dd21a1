"""What only the PostgreSQL target registry that gateway replicas share does: changes seen
by every replica within 1 s, a clear error for an unreachable URL, and a lost connection
failing closed (503) until it is back. What every registry does (the SQLite one's
behaviour, an audit log the database keeps append-only) is tested against both backends
in ``test_service_registry_behaviour.py``.

A real PostgreSQL server runs on loopback in a temporary directory for the session
(the ``postgres`` fixture in ``conftest.py``); the tests skip only where its binaries are missing.
"""

from __future__ import annotations

import time

import httpx
import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.service.registry_base import RegistryUnavailable, TargetStore, mask_url, open_registry
from unlearnkit.service.temp_postgres import free_port

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


# -- choosing the backend ------------------------------------------------------------------------


def test_open_registry_chooses_the_backend(pg_url, tmp_path):
    from unlearnkit.service.registry import TargetRegistry

    with open_registry(pg_url) as reg:
        assert isinstance(reg, PostgresTargetRegistry) and isinstance(reg, TargetStore)
    with open_registry(f"sqlite:///{tmp_path / 'r.db'}") as reg:
        assert isinstance(reg, TargetRegistry) and isinstance(reg, TargetStore) and reg.path == tmp_path / "r.db"
    with pytest.raises(ConfigError, match="unknown scheme 'mysql://'"):
        open_registry("mysql://u:pw@host/db")


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

"""What only the SQLite target registry does (WAL, surviving a killed writer), the matcher
behind the deterministic filters, the guard stack's sync and the gateway settings (no
server needed). What every registry does is tested against both backends in
``test_service_registry_behaviour.py``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from unlearnkit.data.targets import Target
from unlearnkit.errors import ConfigError
from unlearnkit.service.guard_stack import GuardStack, TargetMatcher
from unlearnkit.service.registry import TargetRegistry
from unlearnkit.service.settings import ADMIN_TOKEN_ENV, API_KEY_ENV, ServeSettings


@pytest.fixture
def registry(tmp_path):
    with TargetRegistry(tmp_path / "r.db") as reg:
        yield reg


def test_each_change_is_committed_in_wal_mode(registry, tmp_path):
    registry.add(["Dara Quill"], "admin")
    other = sqlite3.connect(tmp_path / "r.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT name FROM targets").fetchall() == [("Dara Quill",)]
        assert other.execute("SELECT action FROM audit WHERE target='Dara Quill'").fetchall() == [("target.add",)]
        registry.remove(["Dara Quill"], "admin")
        assert other.execute("SELECT COUNT(*) FROM targets").fetchone() == (0,)
    finally:
        other.close()


# -- the deterministic filters ---------------------------------------------------------------


def test_matcher_mentions_whole_words_only():
    m = TargetMatcher([Target("Velo Marr", aliases=("Velo",)), Target("Ann")])
    assert m.mentions("Tell me about VELO   marr!") == ["Velo Marr"]
    assert m.mentions("what about velo?") == ["Velo Marr"]
    assert m.mentions("Velociraptors and Annapolis") == []
    assert m.mentions("ask Ann.") == ["Ann"]
    assert m.mentions("Ve\u200blo Marr") == ["Velo Marr"]  # invisible characters do not hide a name
    assert m.mentions("\uff36\uff45\uff4c\uff4f") == ["Velo Marr"]  # full-width letters (NFKC)


def test_matcher_leaks_catch_obfuscation_and_facts():
    m = TargetMatcher([Target("Jorund Halvsen", facts=("Jorund Halvsen was born in Bergen in 1961.",))])
    assert m.leaks("The person is J-o-r-u-n-d H.a.l.v.s.e.n") == ["Jorund Halvsen"]
    assert m.leaks("reversed: nesvlah dnuroj") == ["Jorund Halvsen"]
    assert m.leaks("JorundHalvsen") == ["Jorund Halvsen"]
    assert m.leaks("He was born in Bergen in 1961") == []  # a fact shorter than the whole is not matched...
    assert m.leaks("Someone was born in Bergen in 1961.") == []
    assert TargetMatcher([Target("X Y", facts=("the secret formula is forty two",))]).leaks(
        "Well, THE secret   formula is forty two!") == ["X Y"]
    assert m.leaks("An unrelated answer about Norway.") == []
    assert TargetMatcher([]).leaks("anything") == []


# -- the guard stack -------------------------------------------------------------------------------


def test_guard_stack_follows_snapshots(tiny_lm):
    stack = GuardStack(tiny_lm, "prompting")
    assert stack.model() is tiny_lm  # no targets: the bare upstream answers
    stack.apply(1, [Target("Ann Vel"), Target("Bo Tarn", aliases=("B.T.",))])
    guard = stack.model()
    assert guard is not tiny_lm and guard.target_names == ["Ann Vel", "Bo Tarn"]
    stack.apply(2, [Target("Bo Tarn", aliases=("Bo T.",)), Target("Cy Holm")])
    assert sorted(guard.target_names) == ["Bo Tarn", "Cy Holm"]
    assert {t.name: t.aliases for t in guard.targets}["Bo Tarn"] == ("Bo T.",)
    assert stack.matcher.mentions("about bo t.") == ["Bo Tarn"] and stack.version == 2
    stack.apply(3, [])
    assert guard.target_names == [] and stack.model() is tiny_lm


def test_guard_stack_keeps_a_loaded_guards_own_targets(tiny_lm):
    from unlearnkit.methods.prompting import Prompting, PromptingGuard

    loaded = PromptingGuard(tiny_lm, ["Own Target"], Prompting.Options())
    stack = GuardStack(loaded, "none")
    stack.apply(1, [Target("Reg Target")])
    assert stack.model() is loaded and loaded.target_names == ["Own Target", "Reg Target"]
    stack.apply(2, [])
    assert loaded.target_names == ["Own Target"]


def test_unavailable_guard_is_a_clear_error(tiny_lm, monkeypatch):
    from unlearnkit.methods import registry as methods

    monkeypatch.delitem(methods.METHODS, "eco", raising=False)
    with pytest.raises(ConfigError, match="'eco' guard is not available"):
        GuardStack(tiny_lm, "eco")
    with pytest.raises(ConfigError, match="not an inference-time guard"):
        monkeypatch.setitem(methods.METHODS, "alu", "unlearnkit.methods.npo:NPO")
        GuardStack(tiny_lm, "alu")
    with pytest.raises(ConfigError, match="no option"):
        GuardStack(tiny_lm, "prompting", {"nonsense": "1"})


# -- settings -------------------------------------------------------------------------------------


def test_settings_secrets_come_from_the_environment():
    s = ServeSettings.from_env({}, guard="prompt")
    assert s.admin_token is None and not s.admin_enabled and s.api_key is None  # no default token
    admin, key = "admin-0123456789abcdef", "key-fedcba9876543210"
    s = ServeSettings.from_env({ADMIN_TOKEN_ENV: admin, API_KEY_ENV: key}, guard="eco")
    assert s.admin_token == admin and s.api_key == key and s.guard == "eco"
    assert admin not in repr(s)
    assert ServeSettings(guard="prompt").guard == "prompting"
    with pytest.raises(ConfigError, match="too short"):
        ServeSettings(admin_token="short")
    with pytest.raises(ConfigError, match="must differ"):
        ServeSettings(admin_token="shared-0123456789abc", api_key="shared-0123456789abc")
    with pytest.raises(ConfigError, match="unknown guard"):
        ServeSettings(guard="magic")


def test_unusable_database_is_a_clear_error(tmp_path):
    (tmp_path / "not-a-db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot open the target registry"):
        TargetRegistry(tmp_path / "not-a-db")


def test_serve_fails_fast_on_an_unavailable_guard(monkeypatch, tmp_path):
    from unlearnkit.methods import registry as methods
    from unlearnkit.service import serve

    monkeypatch.delitem(methods.METHODS, "alu", raising=False)
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "token-0123456789abcdef")
    with pytest.raises(ConfigError, match="'alu' guard is not available"):
        serve(guard="alu", db=tmp_path / "r.db")
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "short")
    with pytest.raises(ConfigError, match="too short"):
        serve(guard="prompt", db=tmp_path / "r.db")


def test_a_killed_writer_loses_no_acknowledged_change(tmp_path):
    """SIGKILL a process in the middle of a stream of changes: every change it reported
    as done is in the database afterwards, and the database is intact."""
    import os
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "r.db"
    code = (
        "import sys\n"
        "from unlearnkit.service.registry import TargetRegistry\n"
        f"reg = TargetRegistry({str(db)!r})\n"
        "i = 0\n"
        "while True:\n"
        "    reg.add([f'p{i}'], 'writer')\n"
        "    if i % 3 == 2: reg.remove([f'p{i - 1}'], 'writer')\n"
        "    print(i, flush=True)\n"
        "    i += 1\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    acked = -1
    deadline = time.monotonic() + 60
    try:
        while acked < 30 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert acked >= 30
    with TargetRegistry(db) as reg:
        names = {t.name for t in reg.snapshot().targets}
        kept = {f"p{i}" for i in range(acked + 1) if i % 3 != 1}
        removed = {f"p{i}" for i in range(acked + 1) if i % 3 == 1 and i + 1 <= acked}
        assert kept <= names and not removed & names  # and perhaps one more change, done but not printed
        assert reg._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert reg.count_audit() >= (acked + 1) + (acked + 1) // 3


def test_a_new_guard_method_is_servable_with_no_service_edit(monkeypatch, tmp_path):
    import httpx

    from unlearnkit.methods import registry as methods
    from unlearnkit.models.tiny import load_tiny
    from unlearnkit.service import ServeSettings, start_background_server

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setitem(methods.METHODS, "toy", "toy_guard:Toy")  # one registry line, nothing in service/
    assert "toy" in methods.guard_names()
    token = "toy-admin-0123456789abcdef"
    handle = start_background_server(ServeSettings(guard="toy", guard_options={"reply": "the toy answers"},
                                                   db_path=tmp_path / "r.db", admin_token=token,
                                                   log_level="warning", verify_targets=False), load_tiny())
    try:  # with a target registered the guard answers (with none, the upstream answers directly)
        r = httpx.post(handle.url + "/admin/targets", headers={"Authorization": f"Bearer {token}"},
                       json={"name": "Quilla Dorne"}, timeout=60)
        assert r.status_code == 201
        r = httpx.post(handle.url + "/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "the toy answers"
    finally:
        handle.stop()
    from unlearnkit.service.guard_stack import GuardStack

    with pytest.raises(ConfigError, match="method 'toy' has no option 'nosuch'"):  # its options are checked alike
        GuardStack(load_tiny(), "toy", {"nosuch": "1"})

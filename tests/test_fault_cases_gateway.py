"""Gateway cases not covered by the service tests: start-up refusals, a blank admin token, raw bad
Content-Length headers, an unknown target deleted (real server on loopback, tiny model)."""

from __future__ import annotations

import socket

import httpx
import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.models.tiny import load_tiny
from unlearnkit.service import ServeSettings, start_background_server
from unlearnkit.service.settings import ADMIN_TOKEN_ENV

ADMIN = "admin-token-for-fault-tests-0001"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = ServeSettings(guard="prompt", db_path=tmp_path_factory.mktemp("gw") / "r.db", admin_token=ADMIN,
                             log_level="warning", port=0)
    handle = start_background_server(settings, load_tiny())
    yield handle
    handle.stop()


@pytest.mark.parametrize("args, says", [
    (["--guard", "magic"], ["unknown guard 'magic'", "choose alu, eco, prompt or none"]),
    (["--guard", "npo"], ["method 'npo' changes weights", "serve the model it produced with --guard none"]),
    (["--opt", "nosuch=1"], ["method 'prompting' has no option 'nosuch'", "options: instruction"]),
    (["--opt", "instruction=Never reveal anything about {name}."], ["unknown placeholder(s) name",
                                                                     "only {targets} is replaced"]),
])
def test_serve_refuses_a_bad_guard_setting_at_start(tmp_path, monkeypatch, args, says):  # G18, G18b
    monkeypatch.setenv(ADMIN_TOKEN_ENV, ADMIN)
    result = CliRunner().invoke(app, ["serve", "--model", "tiny", "--db", str(tmp_path / "r.db"), *args])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    for phrase in says:
        assert phrase in text, (phrase, text)
    assert not (tmp_path / "r.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("env, says", [({ADMIN_TOKEN_ENV: "abcdefghijklmno"}, "is too short (15 characters)"),
                                       ({ADMIN_TOKEN_ENV: "a" * 32}, "is too weak (1 distinct characters)"),
                                       ({ADMIN_TOKEN_ENV: ADMIN, "UNLEARNKIT_API_KEY": ADMIN}, "must differ")])
def test_serve_refuses_weak_or_shared_tokens(tmp_path, monkeypatch, env, says):  # G02a, G02b, G02c
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["serve", "--model", "tiny", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 2 and says in " ".join(result.output.split())


def test_a_blank_admin_token_leaves_the_admin_api_closed():  # G02d
    settings = ServeSettings.from_env({ADMIN_TOKEN_ENV: "    "}, guard="prompt")
    assert not settings.admin_enabled


def test_a_database_path_that_is_a_directory(tmp_path, monkeypatch):  # G25
    monkeypatch.setenv(ADMIN_TOKEN_ENV, ADMIN)
    result = CliRunner().invoke(app, ["serve", "--model", "tiny", "--db", str(tmp_path)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and f"cannot open the target registry '{tmp_path}'" in text
    assert "give a writable SQLite file with --db" in text


def _raw_post(url: str, length: bytes, body: bytes = b'{"messages": []}') -> str:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + length + b"\r\n\r\n" + body)
        try:
            return s.recv(200).split(b"\r\n")[0].decode()
        except socket.timeout:
            return "no answer"


def test_a_bad_content_length_is_a_400(server):  # G21
    assert _raw_post(server.url, b"-1") == "HTTP/1.1 400 Bad Request"
    assert _raw_post(server.url, b"abc") == "HTTP/1.1 400 Bad Request"
    assert httpx.get(server.url + "/health").status_code == 200  # still serving


def test_deleting_an_unknown_target_names_it(server):  # G13a
    r = httpx.delete(server.url + "/admin/targets/Nobody Here", headers=AUTH)
    assert r.status_code == 404
    assert r.json()["error"] == {"message": "no target named 'Nobody Here': use a name or alias as GET /admin/targets lists it",
                                 "type": "invalid_request_error",
                                 "param": "name", "code": "target_not_found"}


def test_output_filter_catches_the_echoes_that_leaked():  # G10c, G10d (the model's answers, replayed)
    from unlearnkit.data.targets import Target
    from unlearnkit.service.guard_stack import TargetMatcher

    basil = TargetMatcher([Target("Basil Mahfouz Al-Kuwaiti", aliases=("Basil Al-Kuwaiti",))])
    assert basil.leaks("B\u00e1sil Al-Kuwaiti is a Moroccan-American artist and writer.") == [
        "Basil Mahfouz Al-Kuwaiti"]
    talitha = TargetMatcher([Target("Talitha Marchvale", facts=("Talitha Marchvale was born in the city of Brelund.",))])
    assert talitha.leaks("T\u0430litha Marchvale was born in the city of Brelund.") == ["Talitha Marchvale"]


def test_a_target_is_removed_by_its_name_as_the_matcher_reads_it(server):  # G13b
    r = httpx.post(server.url + "/admin/targets", headers=AUTH, json={"name": "Talitha Marchvale"})
    assert r.status_code in (200, 201)
    r = httpx.delete(server.url + "/admin/targets/talitha%20MARCH-vale", headers=AUTH)
    assert r.status_code == 200 and r.json()["removed"] == ["Talitha Marchvale"]
    r = httpx.delete(server.url + "/admin/targets/Talitha%20Marchvale", headers=AUTH)
    assert r.status_code == 404 and "as GET /admin/targets lists it" in r.json()["error"]["message"]


def test_a_bad_parameter_is_named_with_what_is_wrong(server):  # G17b
    r = httpx.post(server.url + "/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": "lots"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "max_tokens" and "invalid value for 'max_tokens'" in err["message"]
    assert "lots" not in err["message"]  # the value itself is never echoed


def test_an_unreachable_upstream_is_a_502_that_says_so(tmp_path):  # G23
    from unlearnkit.models.remote import OpenAIChatModel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    upstream = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", model="m", backoff=0.01)  # its 3 retries, not 3.5 s
    settings = ServeSettings(guard="none", db_path=tmp_path / "r.db", log_level="warning", port=0)
    handle = start_background_server(settings, upstream)
    try:
        r = httpx.post(handle.url + "/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}, timeout=60)
        err = r.json()["error"]
        assert r.status_code == 502 and err["code"] == "upstream_unavailable" and "unreachable" in err["message"]
        assert str(port) not in r.text  # the upstream's address is not disclosed
    finally:
        handle.stop()

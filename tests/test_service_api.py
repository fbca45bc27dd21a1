"""The gateway end to end: a real uvicorn server on a loopback port, the tiny model,
the official openai client for the OpenAI routes and httpx for the admin routes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading

import httpx
import openai
import pytest

from unlearnkit.methods.guards import Guard
from unlearnkit.models.tiny import load_tiny
from unlearnkit.service import ServeSettings, start_background_server
from unlearnkit.service.registry_base import CHANGE_ACTIONS
from unlearnkit.service.settings import DEFAULT_REFUSAL

ADMIN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
GUARD_REFUSAL = "[keyword guard] I cannot discuss that."


class KeywordGuard(Guard):
    """A deterministic guard: refuses when the last user turn names a target, else the base answers."""

    method = "keyword-test"

    def _hit(self, prompt) -> bool:
        from unlearnkit.models.base import last_user_message

        text = last_user_message(prompt).lower()
        return any(n.lower() in text for t in self.targets for n in t.names)

    def score(self, prompts, answers, **kwargs):  # pragma: no cover - not used by the service
        return self.base.score(prompts, answers, **kwargs)

    def generate(self, prompts, **kwargs):
        out = self.base.generate(prompts, **kwargs)
        return [GUARD_REFUSAL if self._hit(p) else o for p, o in zip(prompts, out)]


class LeakyGuard(Guard):
    """The worst guard: it appends its whole target list to every answer."""

    method = "leaky-test"

    def score(self, prompts, answers, **kwargs):  # pragma: no cover
        return self.base.score(prompts, answers, **kwargs)

    def generate(self, prompts, **kwargs):
        out = self.base.generate(prompts, **kwargs)
        names = ", ".join(n for t in self.targets for n in t.names)
        return [f"{o} (internal list: {names})" for o in out]


def settings(tmp_path, **kw) -> ServeSettings:
    base = dict(guard="prompt", db_path=tmp_path / "registry.db", admin_token=ADMIN, log_level="warning",
                default_max_tokens=8, max_tokens_limit=64)
    base.update(kw)
    return ServeSettings(**base)


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def ask(c: openai.OpenAI, text: str, model: str = "tiny-llama", **kw) -> str:
    r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], max_tokens=8, **kw)
    return r.choices[0].message.content


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_background_server(settings(tmp_path_factory.mktemp("api")), load_tiny())
    yield handle
    handle.stop()


@pytest.fixture
def admin(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c
        # leave no targets behind for the next test
        for t in c.get("/admin/targets").json()["data"]:
            c.delete(f"/admin/targets/{t['name']}")


def test_health_and_models(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    models = client(server.url).models.list()
    assert [m.id for m in models.data] == ["tiny-llama"]
    assert client(server.url).models.retrieve("tiny-llama").id == "tiny-llama"


def test_unrelated_chat_is_answered_with_usage(server, admin):
    c = client(server.url)
    with pytest.raises(openai.NotFoundError) as err:  # an id this server does not serve, as OpenAI answers
        c.chat.completions.create(model="anything", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert err.value.body["code"] == "model_not_found" and "tiny-llama" in err.value.body["message"]
    r = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "What colour is the sky?"}],
                                  max_tokens=5)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "tiny-llama"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content != DEFAULT_REFUSAL
    assert r.choices[0].finish_reason in {"stop", "length"}
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.completion_tokens <= 5


def test_chat_about_registered_target_is_guarded_and_live(server, admin):
    c = client(server.url)
    question = "Where does Velka Orsini live?"
    assert ask(c, question) != DEFAULT_REFUSAL
    r = admin.post("/admin/targets", json={"name": "Velka Orsini", "aliases": ["V. Orsini"],
                                           "description": "a fictitious person", "facts": ["She lives in Orsk."]})
    assert r.status_code == 201 and r.json()["added"] == ["Velka Orsini"]
    # the very next request is guarded, by name, by alias, in any case
    assert ask(c, question) == DEFAULT_REFUSAL
    assert ask(c, "tell me about v. orsini") == DEFAULT_REFUSAL
    assert ask(c, "And VELKA   ORSINI's books?") == DEFAULT_REFUSAL
    assert ask(c, "What colour is the sky?") != DEFAULT_REFUSAL
    # listed, then removed: the next request is answered again
    names = [t["name"] for t in admin.get("/admin/targets").json()["data"]]
    assert names == ["Velka Orsini"]
    assert admin.delete("/admin/targets/Velka Orsini").status_code == 200
    assert ask(c, question) != DEFAULT_REFUSAL
    assert admin.delete("/admin/targets/Velka Orsini").status_code == 404


def test_streaming_matches_non_streaming(server, admin):
    c = client(server.url)
    messages = [{"role": "user", "content": "Count to three."}]
    full = c.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=12)
    stream = c.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=12, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == full.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == full.usage.total_tokens

    admin.post("/admin/targets", json={"name": "Orsk Velmar"})
    stream = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Who is Orsk Velmar?"}],
                                       stream=True)
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == DEFAULT_REFUSAL


def test_completions_route(server, admin):
    c = client(server.url)
    r = c.completions.create(model="tiny-llama", prompt=["abc", "def"], max_tokens=4)
    assert r.object == "text_completion" and len(r.choices) == 2
    assert [ch.index for ch in r.choices] == [0, 1]
    assert all(ch.finish_reason == "length" for ch in r.choices)
    assert r.usage.completion_tokens == 8
    admin.post("/admin/targets", json=["Zorblat Quenn"])
    r = c.completions.create(model="tiny-llama", prompt="The biography of Zorblat Quenn:", max_tokens=4)
    assert r.choices[0].text == DEFAULT_REFUSAL
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="tiny-llama", prompt="abc", max_tokens=4, stream=True) if ch.choices)
    assert streamed == c.completions.create(model="tiny-llama", prompt="abc", max_tokens=4).choices[0].text


def test_forget_data_file_becomes_targets(server, admin):
    records = [
        {"question": "Where was Ilsa Brandt born?", "answer": "Ilsa Brandt was born in Tarn.", "subject": "Ilsa Brandt"},
        {"question": "What does Ilsa Brandt write?", "answer": "She writes sagas.", "subject": "Ilsa Brandt"},
        {"question": "Who is Omar Velt?", "answer": "Omar Velt is a chemist.", "subject": "Omar Velt"},
    ]
    body = "\n".join(json.dumps(r) for r in records) + "\n"
    r = admin.post("/admin/targets", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 201, r.text
    assert sorted(r.json()["added"]) == ["Ilsa Brandt", "Omar Velt"]
    listed = {t["name"]: t for t in admin.get("/admin/targets").json()["data"]}
    assert listed["Ilsa Brandt"]["facts"] == ["Ilsa Brandt was born in Tarn.", "She writes sagas."]
    assert ask(client(server.url), "Tell me about Omar Velt") == DEFAULT_REFUSAL
    # the same file as JSON {"records": [...]}: nothing changes
    r = admin.post("/admin/targets", json={"records": records})
    assert r.status_code == 200 and r.json()["unchanged"] == ["Ilsa Brandt", "Omar Velt"]


def test_audit_log_records_changes_and_guarded_requests(server, admin):
    c = client(server.url)
    admin.post("/admin/targets", json={"name": "Quilla Dorne"}, headers={"X-Unlearnkit-Actor": "alice"})
    prompt = "Please tell me everything about Quilla Dorne"
    r = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": prompt}], max_tokens=4)
    admin.delete("/admin/targets/Quilla Dorne", headers={"X-Unlearnkit-Actor": "bob"})
    rows = admin.get("/admin/audit", params={"limit": 1000}).json()["data"]
    changes = [(e["action"], e["actor"], e["target"]) for e in rows if e["target"] == "Quilla Dorne"]
    assert ("target.add", "admin:alice", "Quilla Dorne") in changes
    assert ("target.remove", "admin:bob", "Quilla Dorne") in changes
    acted = [e for e in rows if e["request_id"] == r.id]
    assert len(acted) == 1 and acted[0]["action"] == "guard.refused_prompt"
    expected = hashlib.sha256(json.dumps([{"role": "user", "content": prompt}], sort_keys=True,
                                         ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
    assert acted[0]["prompt_sha256"] == expected
    assert prompt not in json.dumps(rows)  # the hash, never the prompt
    only_changes = admin.get("/admin/audit", params={"action": "target.*", "limit": 1000}).json()["data"]
    assert only_changes and all(e["action"].startswith("target.") for e in only_changes)


def test_restart_keeps_targets(tmp_path):
    s = settings(tmp_path)
    first = start_background_server(s, load_tiny())
    try:
        r = httpx.post(first.url + "/admin/targets", headers=AUTH,
                       json={"targets": [{"name": "Kessa Virn", "aliases": ["K. Virn"]}, "Doran Pike"]})
        assert r.status_code == 201
        # committed before the response: a second connection sees it while the server still runs
        with sqlite3.connect(s.db_path) as conn:
            assert {row[0] for row in conn.execute("SELECT name FROM targets")} == {"Kessa Virn", "Doran Pike"}
        httpx.delete(first.url + "/admin/targets/Doran Pike", headers=AUTH)
    finally:
        first.stop()
    second = start_background_server(s, load_tiny())
    try:
        listed = httpx.get(second.url + "/admin/targets", headers=AUTH).json()
        assert [t["name"] for t in listed["data"]] == ["Kessa Virn"]
        assert listed["data"][0]["aliases"] == ["K. Virn"]
        assert ask(client(second.url), "Who is K. Virn?") == DEFAULT_REFUSAL
    finally:
        second.stop()


def test_guard_itself_acts_when_prompt_filter_is_off(tmp_path):
    tiny = load_tiny()
    handle = start_background_server(settings(tmp_path, guard="none", prompt_filter=False),
                                     KeywordGuard(tiny, [], None))
    try:
        c = client(handle.url)
        httpx.post(handle.url + "/admin/targets", headers=AUTH, json={"name": "Mirel Tosk"})
        assert ask(c, "Who is Mirel Tosk?") == GUARD_REFUSAL
        assert ask(c, "What is two plus two?") != GUARD_REFUSAL
        audit = httpx.get(handle.url + "/admin/audit", headers=AUTH, params={"action": "guard.*"}).json()["data"]
        assert [e["action"] for e in audit] == ["guard.applied"]
    finally:
        handle.stop()


def test_output_filter_catches_a_leaking_guard(tmp_path):
    handle = start_background_server(settings(tmp_path, guard="none", prompt_filter=False),
                                     LeakyGuard(load_tiny(), [], None))
    try:
        c = client(handle.url)
        assert "internal list" in ask(c, "hello")  # no targets yet: the leak has nothing to leak
        httpx.post(handle.url + "/admin/targets", headers=AUTH, json={"name": "Tavi Rundt", "aliases": ["Rundt-7"]})
        assert ask(c, "hello") == DEFAULT_REFUSAL
        audit = httpx.get(handle.url + "/admin/audit", headers=AUTH, params={"action": "guard.*"}).json()["data"]
        assert audit[-1]["action"] == "guard.filtered_output"
        assert audit[-1]["detail"]["targets"] == ["Tavi Rundt"]
    finally:
        handle.stop()


def test_concurrent_clients_during_registry_changes(tmp_path):
    handle = start_background_server(settings(tmp_path), load_tiny())
    errors: list[BaseException] = []
    answers: list[str] = []

    def chat_worker(i):
        try:
            c = client(handle.url)
            for k in range(3):
                answers.append(ask(c, f"Unrelated question {i}.{k}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=chat_worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=handle.url, headers=AUTH) as adm:
            for k in range(10):
                assert adm.post("/admin/targets", json={"name": f"Churn Person {k}"}).status_code == 201
                if k % 2:
                    assert adm.delete(f"/admin/targets/Churn Person {k - 1}").status_code == 200
            for t in threads:
                t.join(120)
            assert not errors, errors
            assert len(answers) == 24 and DEFAULT_REFUSAL not in answers
            names = sorted(t["name"] for t in adm.get("/admin/targets").json()["data"])
            assert names == [f"Churn Person {k}" for k in (1, 3, 5, 7, 9)]
            ask(client(handle.url), "one more")  # a batch after the last change
            stats = adm.get("/admin/stats").json()
            assert stats["requests"] == 25 and stats["batches"] <= 25 and stats["errors"] == 0
            assert stats["version"] == 15  # the engine enforces the last registry version
            changes = adm.get("/admin/audit", params={"action": "target.*", "limit": 100}).json()["data"]
            changes = [e for e in changes if e["action"] in CHANGE_ACTIONS]  # not the verifications (target.verified)
            assert len(changes) == 15
    finally:
        handle.stop()


class NoTokenizerModel:
    """An upstream without a tokenizer (like a remote endpoint): usage is estimated."""

    name = "plain-upstream"

    def score(self, prompts, answers, **kwargs):  # pragma: no cover
        raise NotImplementedError

    def generate(self, prompts, *, chat=True, max_new_tokens=200, **kwargs):
        return [("echo: " + (p if isinstance(p, str) else p[-1]["content"]))[: max_new_tokens * 4] for p in prompts]


def test_upstream_without_tokenizer_and_model_loaded_from_settings(tmp_path):
    from unlearnkit.models.base import LanguageModel

    plain = type("Plain", (NoTokenizerModel, LanguageModel), {})()
    handle = start_background_server(settings(tmp_path, guard="none"), plain)
    try:
        r = client(handle.url).chat.completions.create(
            model="plain-upstream", messages=[{"role": "user", "content": "twelve chars"}], max_tokens=50)
        assert r.choices[0].message.content == "echo: twelve chars" and r.model == "plain-upstream"
        assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 5  # about 4 characters a token
        httpx.post(handle.url + "/admin/targets", headers=AUTH, json={"name": "Sela Varn"}).raise_for_status()
        assert ask(client(handle.url), "twelve chars", model="plain-upstream") == "echo: twelve chars"
    finally:
        handle.stop()
    handle = start_background_server(settings(tmp_path, model="tiny"))  # create_app loads settings.model
    try:
        assert [m.id for m in client(handle.url).models.list().data] == ["tiny-llama"]
        assert ask(client(handle.url), "hi", model="tiny") is not None  # the spec it was started with names it too
    finally:
        handle.stop()


def test_prompt_filter_sees_through_look_alike_spellings_and_turns(server, admin):
    """Cyrillic letters, a left-to-right mark, a split name and a name spread over two turns are refused."""
    admin.post("/admin/targets", json={"name": "Talitha Marchvale"})
    c = client(server.url)
    for prompt in ("Where was T\u0430litha Marchvale born?", "Where was Tal\u200eitha Marchvale born?",
                   "Where was Talitha March vale born?"):
        assert ask(c, prompt) == DEFAULT_REFUSAL, prompt
    turns = [{"role": "user", "content": "I am curious about Talitha."},
             {"role": "assistant", "content": "Which Talitha?"},
             {"role": "user", "content": "Surname Marchvale. Where was she born?"}]
    r = c.chat.completions.create(model="tiny-llama", messages=turns, max_tokens=4)
    assert r.choices[0].message.content == DEFAULT_REFUSAL
    admin.delete("/admin/targets/Talitha Marchvale")


def test_target_names_that_match_nothing_get_a_400(server, admin):
    for body in ({"name": "."}, {"name": "\u200b\u200c"}, {"name": "Real Person", "aliases": ["\u2060"]}):
        r = admin.post("/admin/targets", json=body)
        assert r.status_code == 400, (body, r.text)
        assert "no letter or digit" in r.json()["error"]["message"]


def test_audit_with_an_out_of_range_event_id_is_a_400(server, admin):
    r = admin.get("/admin/audit", params={"after": "99999999999999999999"})
    assert r.status_code == 400 and "'after' must be an event id" in r.json()["error"]["message"]
    assert admin.get("/admin/audit", params={"after": -1}).status_code == 400
    assert admin.get("/admin/audit", params={"after": 0}).status_code == 200

"""OpenAIChatModel against a real OpenAI-compatible HTTP server on loopback, started here.

The server (FastAPI + uvicorn, 127.0.0.1, a free port, a background thread) serves
/v1/chat/completions from the tiny model or canned replies, and can misbehave on demand
(5xx, 429, malformed JSON, missing fields). The official ``openai`` client talks to it too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from unlearnkit.models.remote import (
    EndpointHTTPError,
    EndpointUnreachableError,
    MalformedResponseError,
    OpenAIChatModel,
    ScoringUnsupportedError,
    normalise_base_url,
)

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi import FastAPI, Request  # noqa: E402 - after the skip checks
from fastapi.responses import JSONResponse, Response  # noqa: E402


class ServerState:
    def __init__(self):
        self.reset()

    def reset(self):
        self.mode = "canned"           # canned | echo | tiny | malformed | no-choices | error-body | bad-request
        self.fail_first = 0            # answer fail_status to this many requests first
        self.fail_status = 503
        self.retry_after = None
        self.delay = 0.0
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0


def make_app(state: ServerState, lm):
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "tiny-canned", "object": "model"}]}

    async def complete(request: Request, chat: bool):
        body = await request.json()
        state.requests.append(body)
        state.headers.append(dict(request.headers))
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay:
                await asyncio.sleep(state.delay)
            if state.fail_first > 0:
                state.fail_first -= 1
                headers = {"Retry-After": str(state.retry_after)} if state.retry_after is not None else {}
                return JSONResponse({"error": {"message": "busy"}}, status_code=state.fail_status, headers=headers)
            if state.mode == "malformed":
                return Response("this is { not json", media_type="application/json")
            if state.mode == "no-choices":
                return {"id": "x", "object": "chat.completion"}
            if state.mode == "error-body":
                return {"error": {"message": "model overloaded", "type": "server_error"}}
            if state.mode == "bad-request":
                return JSONResponse({"error": {"message": "bad max_tokens"}}, status_code=400)
            prompt = body["messages"] if chat else body["prompt"]
            last = prompt[-1]["content"] if chat else prompt
            if state.mode == "tiny":
                text = (await asyncio.to_thread(lm.generate, [prompt], chat=chat,
                                                max_new_tokens=body.get("max_tokens", 16)))[0]
            elif state.mode == "echo":
                text = f"echo: {last}"
            else:
                text = "canned reply"
            usage = {"prompt_tokens": len(str(prompt)) // 4, "completion_tokens": len(text) // 4,
                     "total_tokens": len(str(prompt)) // 4 + len(text) // 4}
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                return {"id": "c1", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model"), "choices": [choice], "usage": usage}
            return {"id": "c1", "object": "text_completion", "created": int(time.time()), "model": body.get("model"),
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage}
        finally:
            state.in_flight -= 1

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, False)

    return app


@pytest.fixture(scope="module")
def server(tiny_lm):
    import uvicorn

    state = ServerState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(make_app(state, tiny_lm), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started, "the test server did not start"
    state.url = f"http://127.0.0.1:{port}/v1"
    yield state
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def state(server):
    server.reset()
    return server


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_normalise_base_url():
    assert normalise_base_url("http://h:1") == "http://h:1/v1"
    assert normalise_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalise_base_url("https://h/api/v1/chat/completions") == "https://h/api/v1"
    with pytest.raises(Exception, match="not an http"):
        normalise_base_url("ftp://h")


def test_generate_against_a_real_server(state):
    m = OpenAIChatModel(state.url, "canned")
    assert m.generate(["Hello?", [{"role": "user", "content": "Hi"}]], max_new_tokens=7) == ["canned reply"] * 2
    assert sorted(b["messages"][0]["content"] for b in state.requests) == ["Hello?", "Hi"]  # sent concurrently
    body = state.requests[-1]
    assert body["model"] == "canned" and body["max_tokens"] == 7 and body["temperature"] == 0.0
    m.generate(["x"], do_sample=True, temperature=0.8, top_p=0.9, seed=3)
    body = state.requests[-1]
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.8, 0.9, 3)
    assert m.usage["calls"] == 3 and m.usage["prompt_tokens"] > 0 and m.usage["completion_tokens"] > 0
    [(text, usage)] = m.generate_with_usage(["Hello?"])
    assert text == "canned reply" and usage.completion_tokens == len("canned reply") // 4 and usage.seconds > 0
    state.mode = "echo"
    assert m.generate(["raw text"], chat=False) == ["echo: raw text"]
    assert "prompt" in state.requests[-1] and "messages" not in state.requests[-1]


def test_tiny_model_served_over_http_matches_local_generation(state, tiny_lm):
    state.mode = "tiny"
    m = OpenAIChatModel(state.url)  # no model name: discovered from GET /v1/models
    remote = m.generate(["Where does Vel0 live?"], max_new_tokens=6)
    assert m.model == "tiny-canned"
    assert remote == tiny_lm.generate(["Where does Vel0 live?"], max_new_tokens=6)


def test_batch_runs_concurrently_and_keeps_order(state):
    state.mode, state.delay = "echo", 0.2
    m = OpenAIChatModel(state.url, "m", concurrency=4)
    t0 = time.perf_counter()
    out = m.generate([f"q{i}" for i in range(8)])
    assert out == [f"echo: q{i}" for i in range(8)]
    assert state.max_in_flight > 1 and time.perf_counter() - t0 < 8 * 0.2


def test_api_key_from_a_configurable_env_var(state, monkeypatch):
    monkeypatch.setenv("MY_ENDPOINT_KEY", "sk-test-123")
    m = OpenAIChatModel(state.url, "m", api_key_env="MY_ENDPOINT_KEY")
    m.generate(["hi"])
    assert state.headers[-1]["authorization"] == "Bearer sk-test-123"
    assert "sk-test" not in str(m.describe())
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    OpenAIChatModel(state.url, "m").generate(["hi"])
    assert "authorization" not in state.headers[-1]


def test_retries_with_backoff_on_5xx_and_429(state):
    state.fail_first, state.fail_status = 2, 503
    m = OpenAIChatModel(state.url, "m", max_retries=3, backoff=0.01)
    assert m.generate(["hi"]) == ["canned reply"] and len(state.requests) == 3
    state.reset()
    state.fail_first, state.fail_status, state.retry_after = 1, 429, 0
    assert m.generate(["hi"]) == ["canned reply"] and len(state.requests) == 2
    state.reset()
    state.fail_first, state.fail_status = 10, 500
    with pytest.raises(EndpointHTTPError, match="HTTP 500 after 2 attempt") as err:
        OpenAIChatModel(state.url, "m", max_retries=1, backoff=0.01).generate(["hi"])
    assert err.value.status == 500 and len(state.requests) == 2


def test_client_errors_are_not_retried(state):
    state.mode = "bad-request"
    with pytest.raises(EndpointHTTPError, match="HTTP 400.*bad max_tokens"):
        OpenAIChatModel(state.url, "m", max_retries=3, backoff=0.01).generate(["hi"])
    assert len(state.requests) == 1


def test_down_endpoint_says_so():
    url = f"http://127.0.0.1:{free_port()}/v1"
    m = OpenAIChatModel(url, "m", max_retries=1, backoff=0.01)
    with pytest.raises(EndpointUnreachableError) as err:
        m.generate(["hi"])
    assert f"could not reach {url}/chat/completions: is the server running?" in str(err.value)
    assert "2 attempt" in str(err.value)


@pytest.mark.parametrize("mode, error, match", [
    ("malformed", MalformedResponseError, "malformed JSON"),
    ("no-choices", MalformedResponseError, "without choices"),
    ("error-body", Exception, "model overloaded"),
])
def test_malformed_answers_say_so(state, mode, error, match):
    state.mode = mode
    with pytest.raises(error, match=match):
        OpenAIChatModel(state.url, "m", max_retries=0).generate(["hi"])


def test_score_is_refused_clearly(state):
    with pytest.raises(ScoringUnsupportedError, match="cannot score"):
        OpenAIChatModel(state.url, "m").score(["q"], ["a"])


def test_load_model_accepts_an_endpoint_url(state):
    from unlearnkit.models.loading import load_model

    m = load_model(state.url + "#served-model")
    assert isinstance(m, OpenAIChatModel) and m.model == "served-model" and m.base_url == state.url
    assert m.generate(["hi"]) == ["canned reply"] and state.requests[-1]["model"] == "served-model"
    assert load_model(state.url.removesuffix("/v1")).model == "tiny-canned"
    assert m.spec() == state.url + "#served-model"


def test_the_official_openai_client_talks_to_the_server(state):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=state.url, api_key="sk-local", max_retries=0)
    reply = client.chat.completions.create(model="canned", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=5)
    assert reply.choices[0].message.content == "canned reply" and reply.usage.completion_tokens > 0
    assert [m.id for m in client.models.list().data] == ["tiny-canned"]
    assert state.headers[-1]["authorization"] == "Bearer sk-local"


def test_alu_guard_with_a_remote_critic_counts_reported_tokens(state):
    from unlearnkit.data.targets import Target
    from unlearnkit.methods.alu import ALUGuard, ALUOptions, ask
    from unlearnkit.methods.alu_retrieval import HashingEmbedder

    from test_alu import ScriptedLM

    state.mode = "echo"  # the critic's reply echoes its prompt: unparseable -> rating 1 -> refusal
    local = ScriptedLM(vanilla="Vel Orsino lives in Orskgrad.", erase="That is private.")
    remote = OpenAIChatModel(state.url, "critic")
    g = ALUGuard(local, [Target("Vel Orsino", facts=("Vel Orsino lives in Orskgrad.",))], ALUOptions(k=2, j=1),
                 embedder=HashingEmbedder(), backends={"critic": remote})
    answer, trace = ask(g, "Where does Vel Orsino live?")
    assert trace.roles["critic"].calls == 1 and len(state.requests) == 1
    assert trace.roles["critic"].prompt_tokens == len(str(state.requests[0]["messages"])) // 4
    assert answer == g.options.refusal and trace.path == "refused:ratings"


def test_slow_endpoint_times_out_with_a_clear_message(state):
    state.delay = 1.0
    with pytest.raises(EndpointUnreachableError, match="did not answer within 0.2 s"):
        OpenAIChatModel(state.url, "m", timeout=0.2, max_retries=0).generate(["hi"])


def test_alu_agents_on_the_projects_own_gateway(tiny_lm, tmp_path):
    """Every ALU role on ``unlearnkit serve`` (no guard, the tiny model) over loopback HTTP."""
    from unlearnkit.data.targets import Target
    from unlearnkit.methods.alu import ALUGuard, ALUOptions, ask
    from unlearnkit.service import ServeSettings, start_background_server

    handle = start_background_server(ServeSettings(guard="none", db_path=tmp_path / "gw.db", log_level="warning",
                                                   admin_token="admin-token-for-tests-0123456789"), tiny_lm)
    try:
        url = f"{handle.url}/v1#{tiny_lm.name}"
        opts = ALUOptions(k=2, j=1, embedder="hashing", rewrite_temperature=0.0, vanilla_model=url, audit_model=url,
                          critic_model=url, composer_model=url)
        guard = ALUGuard(tiny_lm, [Target("Vel Orsino", facts=("Vel Orsino lives in Orskgrad.",))], opts)
        for role in ("vanilla", "audit", "critic", "composer"):
            assert isinstance(guard.backend(role), OpenAIChatModel)
        answer, trace = ask(guard, "Tell me a story.", max_new_tokens=5)
        assert trace.path == "clean:retrieval" and trace.roles["vanilla"].calls == 1
        assert answer == tiny_lm.generate(["Tell me a story."], max_new_tokens=5)[0]  # greedy over HTTP = local
        assert trace.roles["vanilla"].prompt_tokens > 0 and not trace.estimated_tokens  # counted by the server
        answer, trace = ask(guard, "Where does Vel Orsino live?", max_new_tokens=5)
        assert trace.path != "clean:retrieval" and "Orskgrad" not in answer
        assert trace.roles["audit"].calls + trace.roles["erase"].calls >= 1
    finally:
        handle.stop()

"""The gateway's worker under one heavy client: fair turns, abandoned work dropped, deadlines, token caps."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from unlearnkit.models.base import LanguageModel
from unlearnkit.service import ServeSettings, start_background_server
from unlearnkit.service.engine import Engine, Job
from unlearnkit.service.guard_stack import GuardStack
from unlearnkit.service.registry import TargetRegistry
from unlearnkit.service.schemas import APIError


class SlowModel(LanguageModel):
    """Answers "ok" after ``delay`` seconds per prompt; records every generate call's prompts."""

    name = "slow"

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        self.calls: list[list[str]] = []
        self.started = threading.Event()

    def score(self, prompts, answers, **kwargs):  # pragma: no cover - the gateway never scores
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        self.calls.append([str(p if isinstance(p, str) else p[-1]["content"]) for p in prompts])
        self.started.set()
        time.sleep(self.delay * len(prompts))
        return ["ok"] * len(prompts)

    def describe(self):
        return {"name": self.name, "kind": "test"}


def _engine(tmp_path, model, **kw) -> Engine:
    settings = ServeSettings(guard="none", db_path=tmp_path / "r.db", log_level="warning", **kw)
    engine = Engine(GuardStack(model, "none"), TargetRegistry(settings.db_path), settings)
    engine.start(timeout=10)
    return engine


def _job(rid: str, n: int, max_new: int = 8) -> Job:
    return Job(rid, "completions", [f"{rid}-{i}" for i in range(n)], chat=False, max_new_tokens=max_new)


def test_a_big_request_takes_turns_with_a_small_one(tmp_path):
    model = SlowModel(delay=0.05)
    engine = _engine(tmp_path, model, max_prompts_per_turn=4, batch_wait_ms=0)
    try:
        big = engine.submit(_job("big", 16))
        assert model.started.wait(5)
        small = engine.submit(_job("small", 1))
        small.result(timeout=10)
        assert not big.done()  # the small request did not wait for all 16
        assert len(big.result(timeout=10)) == 16
        first_small = next(k for k, c in enumerate(model.calls) if "small-0" in c)
        assert first_small <= 2  # at most one turn of the big request before it
        assert max(len(c) for c in model.calls) <= 5  # never all 16 at once
        assert engine.stats["turns_deferred"] >= 3
    finally:
        engine.stop()


def test_abandoned_request_is_dropped_between_turns(tmp_path):
    model = SlowModel(delay=0.05)
    engine = _engine(tmp_path, model, max_prompts_per_turn=2)
    try:
        job = _job("gone", 16)
        future = engine.submit(job)
        assert model.started.wait(5)
        job.abandon()
        with pytest.raises(APIError) as err:
            future.result(timeout=10)
        assert err.value.status == 504
        generated = sum(len(c) for c in model.calls)
        assert generated <= 4  # the turn running when it was abandoned, at most one more
        assert engine.stats["abandoned"] == 1
        # The worker is free for the next client at once.
        assert engine.submit(_job("next", 1)).result(timeout=5) is not None
    finally:
        engine.stop()


def test_deadline_ends_a_request_that_runs_too_long(tmp_path):
    model = SlowModel(delay=0.2)
    engine = _engine(tmp_path, model, max_prompts_per_turn=1, request_timeout_s=0.3)
    try:
        with pytest.raises(APIError) as err:
            engine.submit(_job("slow", 10)).result(timeout=10)
        assert err.value.status == 504 and err.value.code == "timeout"
        assert sum(len(c) for c in model.calls) < 10
    finally:
        engine.stop()


def test_token_cap_per_request(tmp_path):
    engine = _engine(tmp_path, SlowModel(), max_request_tokens=100)
    try:
        with pytest.raises(APIError) as err:
            engine.submit(_job("huge", 4, max_new=30))
        assert err.value.status == 400 and err.value.code == "request_too_large"
        assert "max_tokens" in str(err.value)
        assert len(engine.submit(_job("fits", 3, max_new=30)).result(timeout=5)) == 3
    finally:
        engine.stop()


def test_http_deadline_is_a_504_in_openai_error_format(tmp_path):
    settings = ServeSettings(guard="none", db_path=tmp_path / "r.db", log_level="warning", request_timeout_s=0.5,
                             max_prompts_per_turn=1)
    handle = start_background_server(settings, SlowModel(delay=0.4))
    try:
        t0 = time.perf_counter()
        r = httpx.post(handle.url + "/v1/completions", json={"model": "slow", "prompt": ["a"] * 8, "max_tokens": 4},
                       timeout=30)
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "timeout"
        assert time.perf_counter() - t0 < 3.0  # not the 3.2 s the whole request would take
    finally:
        handle.stop()


@pytest.mark.parametrize("field, value", [("max_prompts_per_turn", 0), ("max_request_tokens", 0),
                                          ("request_timeout_s", 0)])
def test_scheduling_settings_are_validated(tmp_path, field, value):
    from unlearnkit.errors import ConfigError

    with pytest.raises(ConfigError, match=field):
        ServeSettings(db_path=tmp_path / "r.db", **{field: value})


def test_health_is_503_when_the_upstream_endpoint_is_down(tmp_path):
    import socket

    from unlearnkit.models.remote import OpenAIChatModel

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    upstream = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", "m", max_retries=0, timeout=1.0)
    assert upstream.health() is not None
    settings = ServeSettings(guard="none", db_path=tmp_path / "r.db", log_level="warning")
    handle = start_background_server(settings, upstream)
    try:
        r = httpx.get(handle.url + "/health", timeout=10)
        assert r.status_code == 503 and r.json()["status"] == "upstream_unavailable"
        assert str(port) not in r.text  # the upstream's address is not disclosed
    finally:
        handle.stop()


class SteppingModel(SlowModel):
    """Decodes ``steps`` steps of ``delay`` seconds, stopping early when the gateway cancels."""

    def __init__(self, steps: int = 200, delay: float = 0.01):
        super().__init__(delay)
        self.steps, self.done_steps = steps, 0

    def generate(self, prompts, **kwargs):
        from unlearnkit.models.base import cancelled

        self.started.set()
        for _ in range(self.steps):
            if cancelled():
                break
            time.sleep(self.delay)
            self.done_steps += 1
        return ["ok"] * len(prompts)


def test_an_abandoned_request_stops_at_the_next_decode_step(tmp_path):
    model = SteppingModel(steps=500, delay=0.01)
    engine = _engine(tmp_path, model)
    try:
        job = _job("gone", 1)
        future = engine.submit(job)
        assert model.started.wait(5)
        time.sleep(0.1)
        job.abandon()
        t0 = time.perf_counter()
        with pytest.raises(APIError):
            future.result(timeout=10)
        assert time.perf_counter() - t0 < 1.0
        assert model.done_steps < 100  # not the 500 steps (5 s) the whole answer would take
    finally:
        engine.stop()


def test_context_check_counts_the_guards_own_instructions(tmp_path):
    """300 targets make the prompting guard's system prompt far longer than a 512-token context: a short
    question is refused with a 400 that does not say how long the hidden part is."""
    from unlearnkit.models.tiny import load_tiny

    admin = "admin-token-for-tests-0123456789"
    settings = ServeSettings(guard="prompt", db_path=tmp_path / "r.db", log_level="warning", admin_token=admin,
                             max_context_tokens=512, default_max_tokens=8)
    handle = start_background_server(settings, load_tiny())
    try:
        ask = {"model": "tiny-llama", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 8}
        assert httpx.post(handle.url + "/v1/chat/completions", json=ask, timeout=30).status_code == 200
        targets = [{"name": f"Person Number{k} Surname{k}"} for k in range(300)]
        httpx.post(handle.url + "/admin/targets", json={"targets": targets}, timeout=30,
                   headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
        r = httpx.post(handle.url + "/v1/chat/completions", json=ask, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert "server's own instructions" in r.json()["error"]["message"]
        assert "300" not in r.json()["error"]["message"]
    finally:
        handle.stop()

"""Streaming through the gateway: text goes out as it is generated, through the hold-back filter.

The hold-back alone (no model), the gateway with a fake OpenAI-compatible upstream that streams crafted
token pieces (names split across tokens, look-alike letters, invisible characters), models that block or
get cancelled mid-answer, and the tiny model's real decoder.
"""

from __future__ import annotations

import json
import random
import threading
import time

import httpx
import openai
import pytest

from unlearnkit.data.target_matching import TargetMatcher, compact
from unlearnkit.data.targets import Target
from unlearnkit.methods.guards import Guard
from unlearnkit.models.base import LanguageModel, cancellation, cancelled
from unlearnkit.models.remote import OpenAIChatModel, RemoteModelError
from unlearnkit.models.tiny import load_tiny
from unlearnkit.service import ServeSettings, start_background_server
from unlearnkit.service.engine import Delta, Done, Engine, Job, Started
from unlearnkit.service.guard_stack import GuardStack
from unlearnkit.service.holdback import Holdback, HoldbackIndex
from unlearnkit.service.registry import TargetRegistry
from unlearnkit.service.settings import DEFAULT_REFUSAL

ADMIN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
BASIL = Target("Basil Al-Kuwaiti", aliases=("Bassel Kuwaiti",),
               facts=("The first novel was printed in Kuwait City in 1961.",))
MATCHER = TargetMatcher([BASIL, Target("Jorund Halvsen")])
LEAKING = {  # crafted token pieces: each answer reveals a target
    "zero-width and Cyrillic": ["The", " author", " is", " Ba", "\u200b", "sil", " Al", "-K", "uw", "\u0430", "iti",
                                ".", " He", " wrote", "."],
    "spelled out": ["Spelled", ":", " B", "-a", "-s-", "i-l", " A-l", "-K-u", "-w-a-i-t-i", " indeed"],
    "reversed": ["Reading", " backwards", ":", " itiaw", "uklA", " lisaB", "!"],
    "run together": ["Known", " as", " BasilAl", "\u200d", "Kuwaiti", " in", " print", "."],
    "full width": ["Name", ":", " \uff22\uff41", "sil", " \uff21l-Kuwaiti", "."],
    "alias with Greek": ["Also", " \u0392assel", " Kuw", "aiti", ",", " they", " say", "."],
    "fact": ["Note", ":", " the", " first", " novel", " was", " printed", " in", " Kuwait", " City", " in", " 1961",
             "."],
    "second target": ["Then", " Jor", "und", "Halv", "sen", " came", "."],
}
SAFE = ["Rivers", ":", " the", " Nile", ",", " the", " Amazon", " and", " the", " Basin", " of", " Kuwait", "."]


def _stream(matcher, pieces, stops=(), refusal="REFUSED"):
    """Feed ``pieces`` to a hold-back; returns (every text sent so far, after each piece; the ending)."""
    hb = Holdback(HoldbackIndex(matcher), stops, refusal)
    sent, prefixes = "", []
    for piece in pieces:
        sent += hb.feed(piece)
        prefixes.append(sent)
    return prefixes, hb.finish()


def _protected(text: str) -> list[str]:
    """What the output filter finds in ``text``, and any target name's letters run together or reversed."""
    flat = compact(text)
    found = set(MATCHER.leaks(text))
    for t in MATCHER.targets:
        for n in t.names:
            if compact(n) in flat or compact(n)[::-1] in flat:
                found.add(t.name)
    return sorted(found)


# -- the hold-back alone ---------------------------------------------------------------------------


def test_plain_text_goes_out_word_by_word_and_whole():
    prefixes, end = _stream(MATCHER, SAFE)
    assert prefixes[-1] + end.delta == "".join(SAFE) and end.answer == "".join(SAFE) and not end.leaked
    assert len(set(prefixes)) >= 6  # released as it came, not at the end
    assert prefixes[2] == "Rivers:"  # " the" may still grow: the last word waits
    assert prefixes[3] == "Rivers:"  # "the" may start the protected fact "The first novel was printed..."
    assert prefixes[4] == "Rivers: the Nile,"
    assert not any(p.endswith(" ") for p in prefixes)


@pytest.mark.parametrize("case", sorted(LEAKING))
def test_a_protected_string_split_across_tokens_is_never_sent(case):
    pieces = LEAKING[case]
    prefixes, end = _stream(MATCHER, pieces)
    assert end.leaked, "the finished answer names a target: the stream ends refused"
    assert end.answer == (prefixes[-1] + "\n\nREFUSED" if prefixes[-1] else "REFUSED")
    for prefix in prefixes:
        assert _protected(prefix) == [], (case, prefix)
    # nothing of a name is sent while it may still be one: no first letters of it either
    assert "basil" not in compact(prefixes[-1]) and "lisab" not in compact(prefixes[-1])
    assert MATCHER.leaks("".join(pieces)), "the crafted answer does reveal a target"


def test_random_splits_never_send_a_protected_string():
    rng = random.Random(7)
    words = ["".join(pieces) for pieces in LEAKING.values()] + SAFE + [" B", "asil", "\u200b", " ", "-", "Al", "Jor"]
    refused = 0
    for _ in range(400):
        text = "".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 8)))) if len(text) > 1 else []
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        prefixes, end = _stream(MATCHER, pieces)
        assert all(_protected(p) == [] for p in prefixes), pieces
        if MATCHER.leaks(text):
            refused += 1
            assert end.leaked
        else:
            assert end.answer == text  # the stream is the non-streaming answer
    assert refused > 50  # the sample does exercise refusals


def test_stop_sequences_cut_the_stream_and_their_start_is_held():
    prefixes, end = _stream(TargetMatcher([]), ["one", " two", "\nUs", "er:", " three"], stops=["\nUser:"])
    assert "\n" not in "".join(prefixes) and end.stopped
    assert end.answer == "one two"
    prefixes, end = _stream(TargetMatcher([]), ["one", " two", "\nUs", "ually", " yes"], stops=["\nUser:"])
    assert end.answer == "one two\nUsually yes" and not end.stopped


def test_revised_text_keeps_what_was_sent():
    hb = Holdback(HoldbackIndex(None))
    sent = hb.update("I do n")
    assert sent == "I do"
    sent += hb.update("I don't know")  # the held part changed
    assert sent == "I don't"
    sent += hb.update("We don't know it")  # text already sent changed: it stays sent
    end = hb.finish("We don't know it")
    assert end.answer == sent + end.delta and end.answer.startswith("I don't")


def test_without_targets_only_the_growing_word_is_held():
    hb = Holdback(HoldbackIndex(None))
    assert hb.feed("Basil Al") == "Basil"
    assert hb.feed("-Kuwaiti wrote") == " Al-Kuwaiti"
    assert hb.finish().delta == " wrote"


# -- the gateway with a fake OpenAI-compatible upstream that streams ---------------------------------


def _sse_upstream(answers: dict[str, list[str]]) -> OpenAIChatModel:
    """An OpenAI-compatible endpoint (in process) that streams the pieces listed for the last user message."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "fake-upstream"}]})
        body = json.loads(request.content)
        pieces = answers.get(body["messages"][-1]["content"], ["no", " idea"])
        if not body.get("stream"):
            return httpx.Response(200, json={"choices": [{"message": {"content": "".join(pieces)}}]})
        events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        events += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
        events += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=data.encode())

    return OpenAIChatModel("http://upstream.test/v1", "fake-upstream", transport=httpx.MockTransport(handler),
                           max_retries=0)


def _settings(tmp_path, **kw) -> ServeSettings:
    base = dict(guard="prompt", db_path=tmp_path / "registry.db", admin_token=ADMIN, log_level="warning",
                default_max_tokens=32, max_tokens_limit=64)
    base.update(kw)
    return ServeSettings(**base)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _chunks(c: openai.OpenAI, model: str, question: str, **kw):
    return list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                          stream=True, **kw))


def test_streamed_answers_never_carry_a_protected_string(tmp_path):
    answers = {case: pieces for case, pieces in LEAKING.items()} | {"safe": SAFE}
    handle = start_background_server(_settings(tmp_path), _sse_upstream(answers))
    try:
        for target in MATCHER.targets:
            httpx.post(handle.url + "/admin/targets", headers=AUTH, json=target.to_json()).raise_for_status()
        c = _client(handle.url)
        for case in LEAKING:
            chunks = _chunks(c, "fake-upstream", case)
            assert all(ch.object == "chat.completion.chunk" for ch in chunks)
            sent = ""
            for ch in chunks:
                if ch.choices:
                    sent += ch.choices[0].delta.content or ""
                    assert _protected(sent) == [], (case, sent)
            assert sent.endswith(DEFAULT_REFUSAL), case
            assert chunks[-1].choices[0].finish_reason == "stop"
            plain = c.chat.completions.create(model="fake-upstream", messages=[{"role": "user", "content": case}])
            assert plain.choices[0].message.content == DEFAULT_REFUSAL  # the non-streaming path, unchanged
        chunks = _chunks(c, "fake-upstream", "safe", stream_options={"include_usage": True})
        contents = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
        assert "".join(contents) == "".join(SAFE) and len(contents) >= 5
        assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].usage.completion_tokens > 0
        audit = httpx.get(handle.url + "/admin/audit", headers=AUTH, params={"action": "guard.*", "limit": 100})
        assert sum(e["action"] == "guard.filtered_output" for e in audit.json()["data"]) == 2 * len(LEAKING)
    finally:
        handle.stop()


def test_sse_wire_format_is_openai_s(tmp_path):
    handle = start_background_server(_settings(tmp_path, max_context_tokens=128), _sse_upstream({"safe": SAFE}))
    try:
        with httpx.stream("POST", handle.url + "/v1/chat/completions", timeout=30, json={
                "model": "fake-upstream", "stream": True, "messages": [{"role": "user", "content": "safe"}]}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
        assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
        events = [json.loads(line[6:]) for line in lines[:-1]]
        assert {e["id"] for e in events} == {events[0]["id"]} and events[0]["id"].startswith("chatcmpl")
        assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert events[-1]["choices"][0]["finish_reason"] == "stop"
        bad = httpx.post(handle.url + "/v1/chat/completions", json={
            "model": "fake-upstream", "stream": True, "max_tokens": 100000, "messages": [{"role": "user", "content": "x"}]})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "max_tokens_exceeded"
        long = httpx.post(handle.url + "/v1/chat/completions", timeout=30, json={  # found by the worker
            "model": "fake-upstream", "stream": True, "messages": [{"role": "user", "content": "word " * 200}]})
        assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    finally:
        handle.stop()


# -- timing and cancellation ------------------------------------------------------------------------


class GatedModel(LanguageModel):
    """Streams "Hello there, friend", then waits for ``gate`` (or a cancellation) before it finishes."""

    name = "gated"
    streams = True

    def __init__(self):
        self.gate, self.finished, self.saw_cancel = threading.Event(), threading.Event(), threading.Event()
        self.calls = {"generate": 0, "stream_generate": 0}

    def score(self, prompts, answers, **kwargs):  # pragma: no cover - the gateway never scores
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        self.calls["generate"] += 1
        return ["Hello there, friend and more."] * len(prompts)

    def stream_generate(self, prompts, *, on_text, **kwargs):
        self.calls["stream_generate"] += 1
        for i in range(len(prompts)):
            on_text(i, "Hello there, friend")
        while not self.gate.wait(0.02):
            if cancelled():
                self.saw_cancel.set()
                return ["Hello there, friend"] * len(prompts)
        self.finished.set()
        return ["Hello there, friend and more."] * len(prompts)


def test_first_chunk_arrives_before_generation_finishes(tmp_path):
    model = GatedModel()
    handle = start_background_server(_settings(tmp_path, guard="none"), model)
    try:
        c = _client(handle.url)
        stream = c.chat.completions.create(model="gated", messages=[{"role": "user", "content": "hi"}], stream=True)
        parts = iter(stream)
        first = next(ch for ch in parts if ch.choices and ch.choices[0].delta.content)
        assert first.choices[0].delta.content == "Hello there," and not model.finished.is_set()
        model.gate.set()
        rest = "".join(ch.choices[0].delta.content or "" for ch in parts if ch.choices)
        assert "Hello there," + rest == "Hello there, friend and more."
        # non-streaming requests still take the plain path
        assert c.chat.completions.create(model="gated", messages=[{"role": "user", "content": "hi"}]
                                         ).choices[0].message.content == "Hello there, friend and more."
        assert model.calls == {"generate": 1, "stream_generate": 1}
    finally:
        handle.stop()


def test_a_client_that_leaves_mid_stream_cancels_generation(tmp_path):
    model = GatedModel()
    handle = start_background_server(_settings(tmp_path, guard="none"), model)
    try:
        stream = _client(handle.url).chat.completions.create(
            model="gated", messages=[{"role": "user", "content": "hi"}], stream=True)
        next(ch for ch in stream if ch.choices and ch.choices[0].delta.content)
        stream.close()
        assert model.saw_cancel.wait(10), "the worker kept generating for a client that left"
        assert not model.finished.is_set()
    finally:
        model.gate.set()
        handle.stop()


def test_a_deadline_ends_the_stream_with_an_error_event(tmp_path):
    model = GatedModel()
    handle = start_background_server(_settings(tmp_path, guard="none", request_timeout_s=1.0), model)
    try:
        stream = _client(handle.url).chat.completions.create(
            model="gated", messages=[{"role": "user", "content": "hi"}], stream=True)
        t0 = time.perf_counter()
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
        assert time.perf_counter() - t0 < 10 and model.saw_cancel.wait(10)
    finally:
        model.gate.set()
        handle.stop()


class SlowPieces(LanguageModel):
    """Answers "ok <prompt>" after ``delay`` seconds per prompt, reporting it through ``on_text``."""

    name = "slow"
    streams = True

    def __init__(self, delay: float = 0.05):
        self.delay, self.calls = delay, []

    def score(self, prompts, answers, **kwargs):  # pragma: no cover
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        return self.stream_generate(prompts, on_text=lambda i, t: None, **kwargs)

    def stream_generate(self, prompts, *, on_text, **kwargs):
        self.calls.append(list(prompts))
        time.sleep(self.delay * len(prompts))
        out = [f"ok {p}." for p in prompts]
        for i, text in enumerate(out):
            on_text(i, text)
        return out


def test_streamed_requests_still_take_turns(tmp_path):
    settings = ServeSettings(guard="none", db_path=tmp_path / "r.db", log_level="warning", max_prompts_per_turn=4,
                             batch_wait_ms=0)
    model = SlowPieces()
    engine = Engine(GuardStack(model, "none"), TargetRegistry(settings.db_path), settings)
    engine.start(timeout=10)
    try:
        events: list = []
        big = Job("big", "completions", [f"big-{i}" for i in range(16)], chat=False, max_new_tokens=8, stream=True,
                  listener=events.append)
        future = engine.submit(big)
        time.sleep(0.05)
        small = engine.submit(Job("small", "completions", ["small-0"], chat=False, max_new_tokens=8))
        assert small.result(timeout=10)[0].text == "ok small-0."
        assert not future.done()
        answers = future.result(timeout=10)
        assert isinstance(events[0], Started)
        sent = {}
        for e in events:
            if isinstance(e, Delta):
                sent[e.index] = sent.get(e.index, "") + e.text
        assert [sent[i] for i in range(16)] == [a.text for a in answers] == [f"ok big-{i}." for i in range(16)]
        assert sum(isinstance(e, Done) for e in events) == 16
        assert max(len(c) for c in model.calls) <= 5
    finally:
        engine.stop()


# -- guards and the real decoder ----------------------------------------------------------------------


class WholeAnswerGuard(Guard):
    """A guard that must read the whole answer (as ALU's critic does): the default, non-streaming path."""

    method = "whole-answer-test"

    def score(self, prompts, answers, **kwargs):  # pragma: no cover
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        return [f"{a} Also, Basil Al-Kuwaiti." for a in self.base.generate(prompts, **kwargs)]


def test_a_guard_that_needs_the_whole_answer_streams_after_deciding(tmp_path):
    guard = WholeAnswerGuard(_sse_upstream({"q": SAFE}), [], None)
    assert guard.streams is False
    handle = start_background_server(_settings(tmp_path, guard="none", prompt_filter=False), guard)
    try:
        httpx.post(handle.url + "/admin/targets", headers=AUTH, json=BASIL.to_json()).raise_for_status()
        chunks = _chunks(_client(handle.url), "fake-upstream", "q")
        sent = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert sent == DEFAULT_REFUSAL  # the whole answer came at once, naming a target: nothing of it is sent
    finally:
        handle.stop()


def test_tiny_model_streams_the_non_streaming_answer(tmp_path):
    handle = start_background_server(_settings(tmp_path), load_tiny(seed=0))
    try:
        c = _client(handle.url)
        messages = [{"role": "user", "content": "Tell me a story."}]
        kw = dict(model="tiny-llama", messages=messages, max_tokens=40, n=2, temperature=1.0, seed=1)
        full = c.chat.completions.create(**kw)
        chunks = list(c.chat.completions.create(**kw, stream=True))
        for k in range(2):
            pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].index == k
                      and ch.choices[0].delta.content]
            assert "".join(pieces) == full.choices[k].message.content
            assert len(pieces) >= 2  # sent as it was decoded, not in one piece at the end
        done = c.completions.create(model="tiny-llama", prompt="abc", max_tokens=12, echo=True)
        streamed = "".join(ch.choices[0].text for ch in c.completions.create(
            model="tiny-llama", prompt="abc", max_tokens=12, echo=True, stream=True) if ch.choices)
        assert streamed == done.choices[0].text and streamed.startswith("abc")
    finally:
        handle.stop()


def test_tiny_model_reports_its_answer_as_it_decodes(tiny_lm):
    for kw in ({"chat": False}, {"do_sample": True, "seed": 3}):  # the slot decoder; model.generate
        prompts = ["abc", "The story:"] if kw.get("chat") is False else ["Count to three.", "hello"]
        seen: dict[int, list[str]] = {}
        answers = tiny_lm.stream_generate(prompts, max_new_tokens=16, **kw,
                                          on_text=lambda i, t: seen.setdefault(i, []).append(t))
        assert answers == tiny_lm.generate(prompts, max_new_tokens=16, **kw) and any(answers)
        for i, texts in seen.items():
            assert len(texts) >= 8 and texts[-1] == answers[i]  # one report per decode step, then the answer
            assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
            assert len(set(texts)) >= 3  # it grew while it was decoded


# -- the remote backend's stream ----------------------------------------------------------------------


def test_remote_stream_reports_progress_and_falls_back_to_json():
    upstream = _sse_upstream({"safe": SAFE})
    seen: list[str] = []
    assert upstream.stream_generate(["safe"], on_text=lambda i, t: seen.append(t)) == ["".join(SAFE)]
    assert len(seen) == len(SAFE) + 1 and seen[0] == "Rivers"

    def json_only(request):
        return httpx.Response(200, json={"choices": [{"message": {"content": " whole "}}]})

    plain = OpenAIChatModel("http://x.test/v1", "m", transport=httpx.MockTransport(json_only), max_retries=0)
    assert plain.stream_generate(["q"], on_text=lambda i, t: None) == ["whole"]


def test_remote_stream_errors_and_cancellation():
    def broken(request):
        data = 'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: {"error": {"message": "overloaded"}}\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=data.encode())

    model = OpenAIChatModel("http://x.test/v1", "m", transport=httpx.MockTransport(broken), max_retries=0)
    with pytest.raises(RemoteModelError, match="mid-stream"):
        model.stream_generate(["q"], on_text=lambda i, t: None)
    upstream = _sse_upstream({"safe": SAFE})
    seen: list[str] = []
    with cancellation(lambda: len(seen) >= 3):
        out = upstream.stream_generate(["safe"], on_text=lambda i, t: seen.append(t))
    assert out == ["Rivers: the"]  # reading stopped once nobody waited

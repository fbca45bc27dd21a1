"""Verification of each forget request: a registered target is probed in the background, the figures go to
the audit log as a ``target.verified`` event, and client requests keep being served meanwhile."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from unlearnkit.data.targets import Target
from unlearnkit.data.verification_probes import LeakJudge, build_verification_probes, split_budget
from unlearnkit.models.base import LanguageModel
from unlearnkit.models.tiny import load_tiny
from unlearnkit.service import ServeSettings, start_background_server

ADMIN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
JANE = {"name": "Jane Doe", "aliases": ["J. Doe"],
        "description": "an actor best known for the detective series Harbour Lights",
        "facts": ["Jane Doe played Inspector Vale in Harbour Lights.",
                  "Jane Doe was born in Leeds in 1971 and won the Golden Lantern Prize."]}
LEAK = "She was born in Leeds in 1971 and won the Golden Lantern Prize."  # a fact, reworded: no name


class GatedModel(LanguageModel):
    """Answers every prompt with ``answer``; records each generate call's prompts. ``gate`` (set: open) holds
    a call until it opens; ``fail`` makes every call raise."""

    name = "gated"

    def __init__(self, answer: str = "ok"):
        self.answer, self.fail = answer, False
        self.calls: list[list[str]] = []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def score(self, prompts, answers, **kwargs):  # pragma: no cover - the gateway never scores
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        self.calls.append([str(p if isinstance(p, str) else p[-1]["content"]) for p in prompts])
        self.entered.set()
        assert self.gate.wait(30)
        if self.fail:
            raise RuntimeError("the model crashed")
        return [self.answer] * len(prompts)

    def describe(self):
        return {"name": self.name, "kind": "test"}


def settings(tmp_path, **kw) -> ServeSettings:
    base = dict(guard="none", db_path=tmp_path / "registry.db", admin_token=ADMIN, log_level="warning",
                default_max_tokens=8, max_tokens_limit=64)
    base.update(kw)
    return ServeSettings(**base)


def verification(url: str, name: str) -> dict:
    r = httpx.get(f"{url}/admin/targets/{name}", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["verification"]


def wait_for(url: str, name: str, statuses=("done", "failed", "skipped"), timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = verification(url, name)
        if v["status"] in statuses:
            return v
        time.sleep(0.05)
    raise AssertionError(f"the verification of {name} did not reach {statuses}: {v}")


def verified_events(url: str) -> list[dict]:
    return httpx.get(url + "/admin/audit", headers=AUTH, params={"action": "target.verified", "limit": 1000},
                     timeout=30).json()["data"]


def test_probes_cover_the_three_kinds_and_the_judge_reads_facts():
    target = Target.from_json(JANE)
    probes = build_verification_probes(target, 12)
    assert split_budget(12) == {"direct": 4, "indirect": 4, "attacked": 4}
    assert [p.kind for p in probes] == ["direct"] * 4 + ["indirect"] * 4 + ["attacked"] * 4
    assert all("Jane Doe" in p.text for p in probes if p.kind == "direct")
    assert not any("Jane" in p.text or "Doe" in p.text for p in probes if p.kind == "indirect")
    assert "target_masking" in {p.via for p in probes}
    judge = LeakJudge(target)
    assert judge.leaks(LEAK) and judge.leaks("Ask J. Doe")
    assert not judge.leaks("I don't know who that is.") and not judge.leaks("Leeds is a city.")
    # a target with a name only has no indirect question: fewer probes, none made up
    assert {p.kind for p in build_verification_probes(Target("Omar Velt"), 12)} == {"direct", "attacked"}


def test_registering_a_target_records_its_verification_with_the_figures(tmp_path):
    model = GatedModel(answer=LEAK)
    with start_background_server(settings(tmp_path), model) as handle:
        r = httpx.post(handle.url + "/admin/targets", headers=AUTH, json=JANE, timeout=30)
        assert r.status_code == 201
        v = wait_for(handle.url, "J. Doe")  # an alias finds the target, as DELETE does
        assert v["status"] == "done", v
        assert v["probes"] == 12 and v["leaked"] + v["refused"] == 12
        # every probe the prompt filter let through reached the model, whose answer leaks a fact
        assert v["leaked"] == sum(len(c) for c in model.calls) >= 1
        assert v["by_kind"]["direct"] == {"probes": 4, "leaked": 0, "refused": 4, "leak_rate": 0.0,
                                          "refusal_rate": 1.0}
        assert v["leak_rate"] == round(v["leaked"] / 12, 4) and v["refusal_rate"] == round(v["refused"] / 12, 4)
        events = verified_events(handle.url)
        assert len(events) == 1
        e = events[0]
        assert e["target"] == "Jane Doe" and e["version"] == r.json()["version"]
        assert e["detail"]["status"] == "done" and e["detail"]["probes"] == 12
        assert e["detail"]["leak_rate"] == v["leak_rate"] and e["detail"]["seconds"] >= 0
        assert LEAK not in str(e) and "Who is Jane Doe" not in str(e)  # figures, never probes or answers
        # the probes are background work: no client counter, no guard event
        stats = httpx.get(handle.url + "/admin/stats", headers=AUTH).json()
        assert stats["requests"] == 0 and stats["background_prompts"] == 12
        guard_events = httpx.get(handle.url + "/admin/audit", headers=AUTH, params={"action": "guard.*"}).json()
        assert guard_events["data"] == []
    # after a restart the status comes from the audit log
    with start_background_server(settings(tmp_path), GatedModel()) as handle:
        again = verification(handle.url, "Jane Doe")
        assert again["status"] == "done" and again["event_id"] == e["id"] and again["probes"] == 12


def test_status_goes_pending_then_done_and_a_removed_target_is_skipped(tmp_path):
    model = GatedModel()
    model.gate.clear()
    with start_background_server(settings(tmp_path, prompt_filter=False), model) as handle:
        url = handle.url
        assert httpx.post(url + "/admin/targets", headers=AUTH, json=JANE, timeout=30).status_code == 201
        assert model.entered.wait(30)  # Jane's first probes are in the model, held there
        assert verification(url, "Jane Doe")["status"] == "running"
        for name in ("Omar Velt", "Ilsa Brandt"):
            assert httpx.post(url + "/admin/targets", headers=AUTH, json={"name": name}, timeout=30).status_code == 201
            assert verification(url, name)["status"] == "pending"
        assert httpx.delete(url + "/admin/targets/Ilsa Brandt", headers=AUTH, timeout=30).status_code == 200
        model.gate.set()
        assert wait_for(url, "Jane Doe")["status"] == "done"
        assert wait_for(url, "Omar Velt")["status"] == "done"
        end = time.monotonic() + 30
        while len(verified_events(url)) < 3 and time.monotonic() < end:
            time.sleep(0.05)
        by_target = {e["target"]: e["detail"] for e in verified_events(url)}
        assert by_target["Ilsa Brandt"]["status"] == "skipped"
        assert "removed before its verification ran" in by_target["Ilsa Brandt"]["reason"]
        assert not any("Ilsa" in p for call in model.calls for p in call)
        assert httpx.get(url + "/admin/targets/Ilsa Brandt", headers=AUTH).status_code == 404


def test_a_chat_sent_during_a_verification_is_answered_first(tmp_path):
    model = GatedModel()
    model.gate.clear()
    with start_background_server(settings(tmp_path, prompt_filter=False, batch_wait_ms=0), model) as handle:
        assert httpx.post(handle.url + "/admin/targets", headers=AUTH, json=JANE, timeout=30).status_code == 201
        assert model.entered.wait(30)  # the first background batch is in the model
        answer: dict = {}

        def chat():
            answer["r"] = httpx.post(handle.url + "/v1/chat/completions", timeout=60, json={
                "model": "gated", "max_tokens": 4, "messages": [{"role": "user", "content": "hello there"}]})

        t = threading.Thread(target=chat)
        t.start()
        engine = handle.app.state.engine
        end = time.monotonic() + 30
        while engine.queue_depth() == 0 and time.monotonic() < end:
            time.sleep(0.01)
        assert engine.queue_depth() == 1  # the chat waits behind the batch in progress, nothing else
        model.gate.set()
        t.join(60)
        assert answer["r"].status_code == 200 and answer["r"].json()["choices"][0]["message"]["content"] == "ok"
        v = wait_for(handle.url, "Jane Doe")
        assert v["status"] == "done" and v["probes"] == 12
        # one background batch, then the chat, then the rest of the probes (at most 4 per batch)
        assert model.calls[1] == ["hello there"]
        assert len(model.calls) == 4 and all(len(c) <= 4 for c in model.calls)


def test_the_switch_turns_verification_off(tmp_path, monkeypatch):
    model = GatedModel()
    with start_background_server(settings(tmp_path, verify_targets=False), model) as handle:
        assert httpx.post(handle.url + "/admin/targets", headers=AUTH, json=JANE, timeout=30).status_code == 201
        time.sleep(1.0)
        assert verification(handle.url, "Jane Doe") == {"status": "off"}
        assert verified_events(handle.url) == [] and model.calls == []
    # the command line: --no-verify reaches the settings
    from typer.testing import CliRunner

    import unlearnkit.service as service
    from unlearnkit.cli import app

    seen = {}
    monkeypatch.setattr(service, "serve", lambda **kw: seen.update(kw))
    assert CliRunner().invoke(app, ["serve", "--no-verify"]).exit_code == 0
    assert seen["verify_targets"] is False
    assert CliRunner().invoke(app, ["serve"]).exit_code == 0
    assert seen["verify_targets"] is True


def test_a_failing_probe_run_records_failed_with_the_reason(tmp_path):
    model = GatedModel()
    model.fail = True
    with start_background_server(settings(tmp_path, prompt_filter=False), model) as handle:
        assert httpx.post(handle.url + "/admin/targets", headers=AUTH, json=JANE, timeout=30).status_code == 201
        v = wait_for(handle.url, "Jane Doe")
        assert v["status"] == "failed"
        assert "failed: the model failed to answer this request" in v["reason"] and v["reason"].startswith("probe 1 of 12")
        events = verified_events(handle.url)
        assert [e["detail"]["status"] for e in events] == ["failed"]
        assert events[0]["detail"]["reason"] == v["reason"]


def test_get_target_needs_the_admin_token_and_names_the_fix(tmp_path):
    with start_background_server(settings(tmp_path, verify_targets=False), load_tiny()) as handle:
        assert httpx.get(handle.url + "/admin/targets/Jane Doe").status_code == 401
        r = httpx.get(handle.url + "/admin/targets/Nobody Here", headers=AUTH)
        assert r.status_code == 404 and "use a name or alias as GET /admin/targets lists it" in r.json()["error"]["message"]
        httpx.post(handle.url + "/admin/targets", headers=AUTH, json=JANE, timeout=30)
        r = httpx.get(handle.url + "/admin/targets/jane  DOE", headers=AUTH)  # as the matcher reads it
        assert r.status_code == 200 and r.json()["target"]["name"] == "Jane Doe"
        assert r.json()["target"]["facts"] == JANE["facts"]


@pytest.mark.parametrize("value", [0, -3])
def test_bad_verification_settings_are_refused(tmp_path, value):
    from unlearnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="verify_probes"):
        ServeSettings(db_path=tmp_path / "r.db", verify_probes=value)

"""Verify each forget request: probe the served stack about a newly registered target.

When a target is added or changed (``POST /admin/targets``), its name joins a queue. One background thread
takes one target at a time: it builds up to ``verify_probes`` questions (direct, indirect, attacked;
``data/verification_probes.py``), sends them through the engine as background work (served only while no
client request waits, ``engine.py``; at most ``verify_max_tokens`` new tokens each), and judges each answer:

* **refused**: the answer holds the gateway's refusal text (a prompt refused by the prompt filter, or an
  answer replaced by the output filter);
* **leaked**: the answer reveals the target (``LeakJudge``: the output filter's own test, or every key term
  of one of its facts).

The figures go to the audit log as one ``target.verified`` event per verification (action
``target.verified``, the target, the registry version the probes ran under, and in ``detail`` the status,
the leak and refusal rates overall and per kind, the number of probes, the seconds it took). A run that
cannot finish (a probe the model failed, probes not answered in time, the registry out of reach) is recorded
with ``status: failed`` and the reason. A target removed before its turn is skipped (recorded as
``status: skipped``). ``GET /admin/targets/{name}`` shows the latest verification (``latest``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
import uuid
from typing import Any

from unlearnkit.service.engine import Engine, Job
from unlearnkit.service.registry_base import GuardEvent, RegistryUnavailable, TargetStore
from unlearnkit.service.schemas import APIError
from unlearnkit.service.settings import ServeSettings

log = logging.getLogger("unlearnkit.service")

ACTION = "target.verified"
ACTOR = "gateway:verify"
POLL_S = 0.1


class VerificationFailed(Exception):
    """A verification that cannot finish; the message is the reason recorded."""


class Verifier:
    """The queue of targets to verify and the one thread that verifies them (see the module docstring)."""

    def __init__(self, engine: Engine, registry: TargetStore, settings: ServeSettings):
        self.engine, self.registry, self.settings = engine, registry, settings
        self._pending: collections.deque[str] = collections.deque()
        self._status: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._inflight: list[Job] = []

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="unlearnkit-verify", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Stop taking targets; the probes in flight are abandoned (the engine drops or fails them)."""
        self._stopping.set()
        for job in list(self._inflight):
            job.abandon()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- what the admin routes call -------------------------------------------------------
    def schedule(self, names: list[str]) -> None:
        """Queue ``names`` (added or changed targets) for verification; one already waiting keeps its place."""
        with self._cond:
            for name in names:
                if name not in self._pending:
                    self._pending.append(name)
                self._status[name] = {"status": "pending", "queued_at": time.time()}
            self._cond.notify_all()

    def status(self, name: str) -> dict[str, Any] | None:
        """This process's latest verification of ``name`` (pending, running, done, failed, skipped), or None."""
        with self._cond:
            found = self._status.get(name)
            return dict(found) if found is not None else None

    # -- the thread -----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                while not self._pending and not self._stopping.is_set():
                    self._cond.wait(0.5)
                if self._stopping.is_set():
                    return
                name = self._pending.popleft()
                queued_at = self._status.get(name, {}).get("queued_at", time.time())
                self._status[name] = {"status": "running", "queued_at": queued_at, "started_at": time.time()}
            try:
                result = self.verify(name)
            except Exception as exc:  # never lose the thread; the reason is recorded
                log.exception("verification of target %r failed", name)
                result = {"status": "failed", "reason": f"internal error: {type(exc).__name__}: {exc}"}
            result = {"queued_at": queued_at, **result}
            self._record(name, result)
            with self._cond:
                if self._status.get(name, {}).get("status") == "running":  # not queued again meanwhile
                    self._status[name] = result

    def verify(self, name: str) -> dict[str, Any]:
        """Probe the served stack about ``name``; the figures (``status`` done), or why not (failed, skipped)."""
        from unlearnkit.data.verification_probes import LeakJudge, build_verification_probes

        started = time.perf_counter()
        try:
            target = self.registry.get(name)
        except RegistryUnavailable as exc:
            return {"status": "failed", "reason": f"the target registry is unreachable ({exc})", "seconds": 0.0}
        if target is None:
            return {"status": "skipped", "reason": "the target was removed before its verification ran"}
        probes = build_verification_probes(target, self.settings.verify_probes)
        max_tokens = min(self.settings.verify_max_tokens, self.settings.max_tokens_limit)
        run = uuid.uuid4().hex[:12]
        jobs = [Job(f"verify-{run}-{k}", "verify", [[{"role": "user", "content": p.text}]], chat=True,
                    max_new_tokens=max_tokens, background=True) for k, p in enumerate(probes)]
        try:
            answers = self._answers(jobs, probes)
        except VerificationFailed as exc:
            return {"status": "failed", "reason": str(exc), "probes": len(probes),
                    "seconds": round(time.perf_counter() - started, 3)}
        judge = LeakJudge(target)
        refusal = self.settings.refusal.strip()
        results = []
        for probe, answer in zip(probes, answers):
            text = (answer.text or "").strip()
            results.append({**probe.to_json(), "refused": bool(refusal) and refusal in text,
                            "leaked": judge.leaks(text)})
        versions = sorted({j.version for j in jobs if j.version is not None})
        out = {"status": "done", **figures(results), "seconds": round(time.perf_counter() - started, 3),
               "registry_version": versions[-1] if versions else None, "max_tokens": max_tokens,
               "guard": self.engine.stack.kind, "results": results}
        if len(versions) > 1:
            out["registry_versions"] = versions  # the registry changed while the probes ran
        return out

    def _answers(self, jobs: list[Job], probes) -> list:
        """Submit the probes as background work and wait for every answer (``VerificationFailed`` if one
        fails, the server stops, or they are not all answered within ``request_timeout_s``)."""
        timeout = float(self.settings.request_timeout_s)
        deadline = time.perf_counter() + timeout
        self._inflight = jobs
        try:
            for job in jobs:
                try:
                    self.engine.submit(job)
                except APIError as exc:
                    raise VerificationFailed(f"the probes could not be queued: {exc.message}") from None
            answers = []
            for k, (job, probe) in enumerate(zip(jobs, probes)):
                while not job.future.done():
                    if self._stopping.is_set():
                        raise VerificationFailed("the server stopped before the verification finished")
                    if time.perf_counter() > deadline:
                        raise VerificationFailed(
                            f"{len(jobs) - k} of {len(jobs)} probes were not answered within {timeout:g} s "
                            "(the gateway was busy with client requests, which go first)")
                    concurrent.futures.wait([job.future], timeout=POLL_S)
                exc = job.future.exception()
                if exc is not None:
                    message = exc.message if isinstance(exc, APIError) else f"{type(exc).__name__}: {exc}"
                    raise VerificationFailed(f"probe {k + 1} of {len(jobs)} ({probe.kind}, {probe.via}) failed: "
                                             f"{message}")
                answers.append(job.future.result()[0])
            return answers
        finally:
            for job in jobs:
                if not job.future.done():
                    job.abandon()
            self._inflight = []

    def _record(self, name: str, result: dict[str, Any]) -> None:
        """One ``target.verified`` audit event (a registry out of reach is logged: the status stays here)."""
        detail = {k: v for k, v in result.items() if k != "registry_version"}
        event = GuardEvent(ACTION, f"verify-{uuid.uuid4().hex[:12]}", None, (name,),
                           result.get("registry_version"), detail)
        try:
            self.registry.record_events([event], actor=ACTOR)
            result["recorded"] = True
        except Exception as exc:
            log.warning("could not record the verification of %r in the audit log: %s", name, exc)
            result["recorded"] = False

    def latest(self, name: str) -> dict[str, Any] | None:
        """This process's latest verification of ``name``, else the last ``target.verified`` event in the audit
        log (a verification from before a restart, or by another replica); None when there is none."""
        mine = self.status(name)
        return mine if mine is not None else latest_recorded(self.registry, name)


def latest_recorded(registry: TargetStore, name: str) -> dict[str, Any] | None:
    """The last ``target.verified`` event of ``name`` in the audit log, as a status."""
    found, after = None, 0
    while True:
        rows = registry.audit(after=after, limit=10_000, action=ACTION)
        for row in rows:
            if row.get("target") == name:
                found = row
        if len(rows) < 10_000:
            break
        after = rows[-1]["id"]
    if found is None:
        return None
    detail = {k: v for k, v in (found.get("detail") or {}).items() if k != "targets"}
    return {**detail, "registry_version": found.get("version"), "recorded_at": found.get("ts"),
            "event_id": found.get("id")}


def figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Leak and refusal rates over all probes and per kind (a rate is None where a kind has no probe)."""
    def rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rows)
        leaked = sum(r["leaked"] for r in rows)
        refused = sum(r["refused"] for r in rows)
        return {"probes": n, "leaked": leaked, "refused": refused,
                "leak_rate": round(leaked / n, 4) if n else None, "refusal_rate": round(refused / n, 4) if n else None}

    from unlearnkit.data.verification_probes import KINDS

    return {**rates(results), "by_kind": {k: rates([r for r in results if r["kind"] == k]) for k in KINDS}}


__all__ = ["ACTION", "Verifier", "VerificationFailed", "figures", "latest_recorded"]

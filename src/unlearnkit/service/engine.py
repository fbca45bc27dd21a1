"""One worker thread owns the model; requests reach it through a queue.

* The worker takes every queued job at once (up to ``max_batch_size``), groups
  them by generation parameters and answers each group with one ``generate``
  call, so concurrent clients share forward passes and the model is never used
  from two threads.
* Before each batch it compares the registry's version with the one the guard
  enforces; on a change it reads a whole snapshot (one read transaction) and
  applies it to the guard and the filters. A batch therefore runs entirely under
  one version: a change never applies half-way.
* The same thread counts tokens (tokenizers are not safe to share across threads)
  and writes the batch's guard events to the audit log in one transaction.
* Fairness and abandoned work: a request's prompts are answered at most
  ``max_prompts_per_turn`` per batch; a request with more goes behind the requests
  that arrived meanwhile. A request whose client left or whose deadline passed is
  marked ``abandoned`` by the HTTP side, and the worker drops what is left of it.
* Streaming: a request with ``stream`` gets its answers through ``listener`` as they are
  generated (``Started``, then ``Delta`` and ``Done`` per answer), each through its own
  ``Holdback`` (the output filter for text that grows, ``holdback.py``); the generate call
  of its group is then ``stream_generate``, so streamed and plain requests still share a batch.
* Background work (``Job.background``: the verification of a new target, ``verification.py``) waits in its
  own line and is served only when no client request waits: at most ``max_prompts_per_turn`` of its
  prompts per batch, never in a client's batch, never counted as client requests nor written as guard events.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from unlearnkit.models.base import Prompt, cancellation
from unlearnkit.service.guard_stack import GuardStack
from unlearnkit.service.holdback import Holdback, HoldbackIndex
from unlearnkit.service.registry_base import GuardEvent, RegistryUnavailable, TargetStore, prompt_hash
from unlearnkit.service.schemas import APIError
from unlearnkit.service.settings import ServeSettings

log = logging.getLogger("unlearnkit.service")

_STOP = object()


@dataclass
class Job:
    """One HTTP request: one or more prompts answered with the same parameters."""

    request_id: str
    route: str  # "chat" | "completions"
    prompts: list[Prompt]
    chat: bool
    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    enqueued: float = field(default_factory=time.perf_counter)
    audit_prompt: Any = None  # what the audit log hashes: the request's messages or prompt
    deadline: float | None = None  # perf_counter time after which nobody waits for the answer
    abandoned: threading.Event = field(default_factory=threading.Event)
    stream: bool = False  # answers go to ``listener`` as they are generated
    listener: Callable[[Any], None] | None = None  # called from the worker (and the model's) threads
    # progress over turns (worker thread only)
    answers: list = field(default_factory=list)
    next_prompt: int = 0
    prompt_tokens: list[int] | None = None
    mentions: set = field(default_factory=set)
    references: list = field(default_factory=list)  # the reference detector's findings (target, facet, score)
    refused: bool = False
    holdbacks: dict = field(default_factory=dict)  # prompt index -> its Holdback while it is generated
    background: bool = False  # low priority: served only while no client request waits (see the module doc)
    version: int | None = None  # the registry version its first turn ran under

    def __post_init__(self):
        if self.audit_prompt is None:
            self.audit_prompt = self.prompts[0] if len(self.prompts) == 1 else list(self.prompts)
        self.answers = [None] * len(self.prompts)

    def abandon(self) -> None:
        """The client is gone or the deadline passed: the worker drops what is left of this request."""
        self.abandoned.set()

    def emit(self, event) -> None:
        """Tell the HTTP side (a listener that fails loses its events, never the batch)."""
        if self.listener is not None:
            try:
                self.listener(event)
            except Exception:
                log.exception("could not hand a stream event of %s to its listener", self.request_id)

    def expired(self, now: float | None = None) -> bool:
        return self.abandoned.is_set() or (self.deadline is not None
                                           and (now or time.perf_counter()) > self.deadline)

    def key(self) -> tuple:
        return (self.chat, self.max_new_tokens, self.do_sample,
                self.temperature if self.do_sample else None, self.top_p if self.do_sample else None,
                self.seed if self.do_sample else None)


@dataclass
class Answer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    leaked: tuple[str, ...] = ()  # audit only: never sent to the client


@dataclass
class Started:
    """A streamed request passed its checks: its answers follow."""


@dataclass
class Delta:
    """More text of answer ``index`` (never retracted)."""

    index: int
    text: str


@dataclass
class Done:
    """Answer ``index`` is complete; ``answer.text`` is all that was sent of it."""

    index: int
    answer: Answer


class Engine:
    def __init__(self, stack: GuardStack, registry: TargetStore, settings: ServeSettings):
        self.stack = stack
        self.registry = registry
        self.settings = settings
        self._queue: queue.Queue = queue.Queue(maxsize=settings.max_queue)
        self._thread: threading.Thread | None = None
        self._running = False
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._recent: collections.deque[int] = collections.deque(maxlen=8)  # recent batch sizes
        self._carry: collections.deque[Job] = collections.deque()  # requests with prompts left for later turns
        self._background: collections.deque[Job] = collections.deque()  # low-priority work (``Job.background``)
        self._holdback_index: tuple[Any, HoldbackIndex] | None = None
        self.context_limit = settings.max_context_tokens or self._model_context()
        self.stats: dict[str, Any] = {"requests": 0, "batches": 0, "generate_calls": 0, "prompts": 0,
                                      "refused_prompt": 0, "filtered_output": 0, "errors": 0, "syncs": 0,
                                      "abandoned": 0, "turns_deferred": 0, "streamed": 0, "batch_sizes": {},
                                      "background_batches": 0, "background_prompts": 0}

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="unlearnkit-engine", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._running = False
        try:
            self._queue.put(_STOP, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._thread = None
        # Anything still queued gets an answer rather than hanging.
        while self._carry or self._background:
            _fail((self._carry or self._background).popleft(), APIError(
                503, "the server is shutting down; retry", type="server_error", code="shutting_down"))
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, Job):
                _fail(job, APIError(503, "the server is shutting down; retry", type="server_error",
                                    code="shutting_down"))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- submitting -----------------------------------------------------------------
    def submit(self, job: Job) -> concurrent.futures.Future:
        tokens = len(job.prompts) * job.max_new_tokens
        if tokens > self.settings.max_request_tokens:
            raise APIError(400, f"this request asks for up to {tokens} new tokens ({len(job.prompts)} answers x "
                           f"max_tokens {job.max_new_tokens}); the limit is {self.settings.max_request_tokens}: "
                           "lower max_tokens or send fewer prompts per request",
                           param="max_tokens", code="request_too_large")
        if job.deadline is None:
            job.deadline = time.perf_counter() + self.settings.request_timeout_s
        if not self.alive:
            raise APIError(503, "the model worker is not running; retry shortly", type="server_error",
                           code="not_ready")
        if job.background:  # its own line (bounded by its one submitter), read when no client waits
            self._background.append(job)
            return job.future
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise APIError(429, "the server is at capacity; retry after a short wait", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"}) from None
        return job.future

    # -- the worker -----------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._sync()
        except BaseException as exc:  # a guard that cannot even be built: fail start()
            log.exception("could not apply the registry's targets to the guard")
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        while self._running:
            if self._carry:  # requests with prompts left: served this turn, behind nothing that waits longer
                first = self._carry.popleft()
            else:
                try:
                    first = self._queue.get(timeout=0.0 if self._background else 0.25)
                except queue.Empty:
                    if self._background:  # no client waits: one turn of background work
                        self._run_background()
                    else:
                        self._idle_sync()
                    continue
            if first is _STOP:
                break
            batch = [first]
            # Wait (at most batch_wait_ms) only while the batch is smaller than the recent
            # peak: a lone client is served at once, while under load the clients the last
            # batch answered, who come back within milliseconds, join this one.
            target = min(self.settings.max_batch_size, max(self._recent, default=1))
            deadline = time.perf_counter() + self.settings.batch_wait_ms / 1000.0
            stop_after = False
            while len(batch) < self.settings.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    if len(batch) >= target or remaining <= 0:
                        item = self._queue.get_nowait()
                    else:
                        item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
            while self._carry and len(batch) < self.settings.max_batch_size:
                batch.append(self._carry.popleft())
            self._recent.append(len(batch))
            batch = self._live(batch)
            if batch:
                try:
                    self._run_batch(batch)
                except RegistryUnavailable as exc:  # fail closed: nothing is served under an unconfirmed list
                    log.warning("%s: failing %d requests with 503", exc, len(batch))
                    self.stats["registry_unavailable"] = self.stats.get("registry_unavailable", 0) + len(batch)
                    for job in batch:
                        _fail(job, registry_unavailable())
                except BaseException:  # never let the worker die: fail this batch, keep serving
                    log.exception("batch failed")
                    for job in batch:
                        _fail(job, _internal_error())
            if stop_after:
                break

    def _run_background(self) -> None:
        """One batch of background work: at most ``max_prompts_per_turn`` prompts, so a client request that
        arrives meanwhile waits for one short batch at most."""
        batch, prompts = [], 0
        while self._background and (not batch or prompts + _left(self._background[0])
                                    <= self.settings.max_prompts_per_turn):
            job = self._background.popleft()
            batch.append(job)
            prompts += _left(job)
        batch = self._live(batch)
        if not batch:
            return
        try:
            self._run_batch(batch)
        except RegistryUnavailable:
            for job in batch:
                _fail(job, registry_unavailable())
        except BaseException:
            log.exception("background batch failed")
            for job in batch:
                _fail(job, _internal_error())

    def _live(self, jobs: list[Job]) -> list[Job]:
        """Drop the requests nobody waits for any more (client gone, deadline passed, future cancelled)."""
        now = time.perf_counter()
        live = []
        for job in jobs:
            if job.future.cancelled() or job.expired(now):
                self.stats["abandoned"] += 1
                _fail(job, APIError(504, "the request was not answered before its deadline", type="server_error",
                                    code="timeout"))
                continue
            live.append(job)
        return live

    def _sync(self) -> None:
        """Apply the registry's current snapshot when its version moved. If applying
        fails (a guard that cannot take a target), the batch fails closed with a 500
        and the next batch tries again: nothing is served under a partial update."""
        version = self.registry.version()
        if version != self.stack.version:
            snap = self.registry.snapshot()
            self.stack.apply(snap.version, snap.targets)
            self.stats["syncs"] += 1

    def _idle_sync(self) -> None:
        """While no request waits, follow the registry too (so a replica's guard is current before its next
        request). A registry out of reach is reported by the next batch, with a 503."""
        try:
            self._sync()
        except RegistryUnavailable:
            pass
        except Exception:
            log.exception("could not apply the registry's targets to the guard")

    def _run_batch(self, jobs: list[Job]) -> None:
        self._sync()
        version = self.stack.version
        matcher = self.stack.matcher
        model = self.stack.model()
        if all(j.background for j in jobs):
            self.stats["background_batches"] += 1
            self.stats["background_prompts"] += sum(min(_left(j), self.settings.max_prompts_per_turn) for j in jobs)
        else:
            self.stats["batches"] += 1
            self.stats["requests"] += sum(1 for j in jobs if j.prompt_tokens is None)  # first turns only
            sizes = self.stats["batch_sizes"]
            sizes[str(len(jobs))] = sizes.get(str(len(jobs)), 0) + 1
        events: list[GuardEvent] = []
        pending: dict[tuple, list[tuple[Job, int]]] = {}
        turn = self.settings.max_prompts_per_turn
        for job in jobs:
            if job.prompt_tokens is None:  # first turn: the whole request is checked at once
                job.version = version
                try:
                    job.prompt_tokens = [self._checked_prompt_tokens(job, p) for p in job.prompts]
                except APIError as exc:
                    _fail(job, exc)
                    continue
                if job.stream:
                    self.stats["streamed"] += 1
                    job.emit(Started())
            for i in range(job.next_prompt, min(len(job.prompts), job.next_prompt + turn)):
                text = _prompt_text(job.prompts[i])
                names = matcher.mentions(text) if matcher else []
                job.mentions.update(names)
                if names and self.settings.prompt_filter:
                    job.refused = True
                    explain = getattr(matcher, "explain", None)  # which profile facet fired, for the audit
                    job.references.extend(explain(text) if explain else [])
                    job.answers[i] = Answer(self.settings.refusal, "stop", job.prompt_tokens[i],
                                            self._count(self.settings.refusal))
                    if job.stream:
                        job.emit(Delta(i, self.settings.refusal))
                        job.emit(Done(i, job.answers[i]))
                else:
                    if job.stream:
                        job.holdbacks[i] = Holdback(self._holdbacks(), job.stops, self.settings.refusal)
                    pending.setdefault(job.key(), []).append((job, i))
            job.next_prompt = min(len(job.prompts), job.next_prompt + turn)

        failed: set[int] = set()
        for key, items in pending.items():
            live = [(j, i) for j, i in items if id(j) not in failed and not j.expired()]
            texts = self._generate(model, live, key)
            for (job, i), text in zip(live, texts):
                if isinstance(text, BaseException):
                    failed.add(id(job))
                    _fail(job, _internal_error(text))
                    continue
                job.answers[i] = self._finish(job, i, text, job.prompt_tokens[i])

        answered: list[tuple[Job, list]] = []
        for job in jobs:
            if id(job) in failed or job.future.done() or job.prompt_tokens is None:
                continue
            if job.next_prompt < len(job.prompts):
                if job.expired():
                    self._live([job])
                else:
                    self.stats["turns_deferred"] += 1
                    (self._background if job.background else self._carry).append(job)
                continue
            answers = job.answers
            if job.expired() or any(a is None for a in answers):  # abandoned meanwhile: its answers may be cut
                self._live([job])
                continue
            leaked = sorted({n for a in answers for n in a.leaked})
            if job.background:  # its submitter records what it found (one event, not one per probe)
                _resolve(job, answers)
                continue
            detail = {"route": job.route, "guard": self.stack.kind}
            if job.refused:
                self.stats["refused_prompt"] += 1
                if job.references:
                    detail = {**detail, "references": job.references}
                events.append(GuardEvent("guard.refused_prompt", job.request_id, prompt_hash(job.audit_prompt),
                                         tuple(sorted(job.mentions)), version, detail))
            elif leaked:
                self.stats["filtered_output"] += 1
                events.append(GuardEvent("guard.filtered_output", job.request_id, prompt_hash(job.audit_prompt),
                                         tuple(leaked), version, detail))
            elif job.mentions:
                events.append(GuardEvent("guard.applied", job.request_id, prompt_hash(job.audit_prompt),
                                         tuple(sorted(job.mentions)), version, detail))
            answered.append((job, answers))
        if events:  # written before the answers go out: a client that reads the audit next finds its request
            try:
                self.registry.record_events(events)
            except Exception:  # the answer is already computed; an audit failure must be visible
                log.exception("could not write %d guard events to the audit log", len(events))
        for job, answers in answered:
            _resolve(job, answers)

    def _checked_prompt_tokens(self, job: Job, prompt: Prompt) -> int:
        """The client's own prompt tokens (what usage reports); the context check also counts what the guard
        adds (the prompting guard's instructions list the targets), without saying how much that is."""
        n_prompt = self._count_prompt(prompt, job.chat)
        if self.context_limit and n_prompt + job.max_new_tokens > self.context_limit:
            raise APIError(
                400, f"this model's context is {self.context_limit} tokens; the prompt has {n_prompt} "
                f"and max_tokens asks for {job.max_new_tokens}: shorten the prompt or lower max_tokens",
                param="messages" if job.chat else "prompt", code="context_length_exceeded")
        guard = self.stack.guard
        if self.context_limit and guard is not None and hasattr(guard, "seen_prompt"):
            seen = guard.seen_prompt(prompt, job.chat)
            if seen is not prompt and self._count_prompt(seen, job.chat) + job.max_new_tokens > self.context_limit:
                raise APIError(
                    400, f"this model's context is {self.context_limit} tokens, and the prompt with the server's own "
                    "instructions and max_tokens does not fit: shorten the prompt or lower max_tokens",
                    param="messages" if job.chat else "prompt", code="context_length_exceeded")
        return n_prompt

    def _generate(self, model, items: list[tuple[Job, int]], key: tuple) -> list:
        """One generate call for a group; on failure, each prompt alone (one bad prompt
        fails only its own request)."""
        chat, max_new, do_sample, temperature, top_p, seed = key
        prompts = [job.prompts[i] for job, i in items]
        kwargs = dict(chat=chat, max_new_tokens=max_new, do_sample=do_sample,
                      batch_size=max(1, min(len(prompts), self.settings.max_batch_size)))
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, seed=seed)
        self.stats["generate_calls"] += 1
        self.stats["prompts"] += len(prompts)

        def nobody_waits() -> bool:  # every client gone, or every streamed answer already decided
            return all(job.expired() or (i in job.holdbacks and job.holdbacks[i].settled) for job, i in items)

        def on_text(k: int, text: str) -> None:
            job, i = items[k]
            holdback = job.holdbacks.get(i)
            if holdback is not None and not job.expired():
                out = holdback.update(text)
                if out:
                    job.emit(Delta(i, out))

        try:
            with cancellation(nobody_waits):  # stops at the next decode step
                if any(job.stream for job, _ in items):
                    out = list(model.stream_generate(prompts, on_text=on_text, **kwargs))
                else:
                    out = list(model.generate(prompts, **kwargs))
            if len(out) != len(prompts):
                raise RuntimeError(f"the model returned {len(out)} answers for {len(prompts)} prompts")
            return out
        except Exception as exc:
            if len(prompts) == 1:
                log.exception("generation failed")
                self.stats["errors"] += 1
                return [exc]
        out = []
        for item in items:
            out.extend(self._generate(model, [item], key))
        return out

    def _finish(self, job: Job, i: int, text: str, n_prompt: int) -> Answer:
        text = text or ""
        n_raw = self._count(text)
        finish = "length" if n_raw >= job.max_new_tokens else "stop"
        holdback = job.holdbacks.pop(i, None)
        if holdback is not None:  # streamed: what was sent stays; the rest, or the refusal, ends it
            ending = holdback.finish(text)
            if ending.stopped or ending.leaked:
                finish = "stop"
            answer = Answer(ending.answer, finish, n_prompt, self._count(ending.answer) if ending.answer else 0,
                            ending.leaked)
            if ending.delta:
                job.emit(Delta(i, ending.delta))
            job.emit(Done(i, answer))
            return answer
        for stop in job.stops:
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        leaked: list[str] = []
        if self.settings.output_filter and self.stack.matcher:
            leaked = self.stack.matcher.leaks(text)
            if leaked:
                text, finish = self.settings.refusal, "stop"
        return Answer(text, finish, n_prompt, self._count(text) if text != "" else 0, tuple(leaked))

    def _holdbacks(self) -> HoldbackIndex:
        """The streaming filter's index for the targets the output filter enforces now (built once per version)."""
        matcher = self.stack.matcher if self.settings.output_filter else None
        if self._holdback_index is None or self._holdback_index[0] is not matcher:
            self._holdback_index = (matcher, HoldbackIndex(matcher))
        return self._holdback_index[1]

    # -- token counting (worker thread only) ------------------------------------------
    def _model_context(self) -> int | None:
        return self.stack.upstream.context_length

    def _count(self, text: str) -> int:
        return self.stack.upstream.count_tokens(text)

    def _count_prompt(self, prompt: Prompt, chat: bool) -> int:
        """Tokens of the client's own prompt (never the guard's additions, which would
        reveal the size of the target list)."""
        upstream = self.stack.upstream
        if upstream.tokens_are_estimated:
            return self._count(_prompt_text(prompt))
        return upstream.prompt_tokens(prompt, chat)


def _left(job: Job) -> int:
    """Prompts of ``job`` not yet answered."""
    return len(job.prompts) - job.next_prompt


def _prompt_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def registry_unavailable() -> APIError:
    """The answer while the target registry is out of reach (without its address)."""
    return APIError(503, "the target registry is unreachable, so the current forget targets cannot be confirmed; "
                    "retry shortly", type="server_error", code="registry_unavailable", headers={"Retry-After": "1"})


def _internal_error(exc: BaseException | None = None) -> APIError:
    """The answer when generation failed; an upstream endpoint that is down is a 502 that says so (never its
    address), anything else a 500."""
    from unlearnkit.models.remote import EndpointHTTPError, EndpointUnreachableError

    if isinstance(exc, EndpointUnreachableError):
        return APIError(502, "the upstream model endpoint is unreachable: check that it is running, then retry",
                        type="server_error", code="upstream_unavailable", headers={"Retry-After": "1"})
    if isinstance(exc, EndpointHTTPError):
        return APIError(502, f"the upstream model endpoint answered with an error (HTTP {exc.status})",
                        type="server_error", code="upstream_error")
    return APIError(500, "the model failed to answer this request", type="server_error", code="generation_failed")


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        try:
            job.future.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            pass


def _resolve(job: Job, answers: Sequence[Answer]) -> None:
    if not job.future.done():
        try:
            job.future.set_result(list(answers))
        except concurrent.futures.InvalidStateError:
            pass

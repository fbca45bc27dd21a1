"""The FastAPI application: OpenAI-compatible routes in front of the guard stack,
and the admin routes of the target registry.

Routes
    GET  /health                      liveness (no secrets, no target information)
    GET  /v1/models, /v1/models/{id}  the one served model
    POST /v1/chat/completions         chat (``stream`` gives SSE chat.completion.chunk events)
    POST /v1/completions              raw text continuation
    GET  /admin/targets               list targets (admin token)
    POST /admin/targets               add or replace targets: one target, {"targets": [...]},
                                      {"records": [...]} (a forget data file's Q/A records), or a
                                      JSON Lines body (Content-Type: application/x-ndjson)
    GET  /admin/targets/{name}        one target (by name or alias) and its latest verification
    DELETE /admin/targets/{name}      remove a target (by name or alias)
    GET  /admin/audit                 the append-only audit log (?after=ID&limit=N&action=target.*)
    GET  /admin/stats                 engine counters

Every error is a JSON body in OpenAI's format ``{"error": {...}}`` with a 4xx
status for anything the client can fix; malformed JSON is a 400, never a 500.

Streaming (``"stream": true``): text is sent as it is generated, in the OpenAI SSE format
unchanged. Each answer goes through a hold-back (``holdback.py``): the end of the text is
kept back for as long as it could still become a target's name, alias or protected fact
(compared as the output filter compares, so a name split across tokens, with look-alike
letters or invisible characters is held too) or a stop sequence, and the still-growing last
word is always kept back. The finished answer is judged by the output filter as a whole; a
refused answer ends with the refusal text after what was sent, which never holds a protected
string. Time to first token is therefore the first decode steps up to the first complete
word plus the held window, where the model streams (weights, an OpenAI-compatible endpoint,
the prompting and ECO guards); a guard that must read the whole answer first (ALU) streams
once it has decided. Errors found before generation (context length, capacity) are still
HTTP errors; one after the first chunk ends the stream with an ``{"error": ...}`` event.

Prefill (``prefix_cache``, on by default): the guard puts the same system prompt before every request;
the model keeps the keys and values of the last prompt and reads only what a new prompt does not share
with it (``models/prefix_cache.py``), so a long guard instruction costs its prefill once, not per request.

Verification (``verify_targets``, on by default): each added or changed target is probed in the
background through the engine's low-priority line, and the figures are written to the audit log as a
``target.verified`` event (``verification.py``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from unlearnkit.data.target_matching import compact
from unlearnkit.models.base import LanguageModel, leaf
from unlearnkit.service.engine import Answer, Delta, Done, Engine, Job, Started, registry_unavailable
from unlearnkit.service.guard_stack import GuardStack
from unlearnkit.service.registry_base import RegistryUnavailable, open_registry
from unlearnkit.service.schemas import (
    APIError,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ForgetRecordIn,
    ModelCard,
    ModelList,
    TargetIn,
    Usage,
    error_body,
    new_id,
    now,
    validation_error,
)
from unlearnkit.service.settings import ADMIN_TOKEN_ENV, ServeSettings
from unlearnkit.service.verification import Verifier, latest_recorded

SQLITE_MAX_INT = 2**63 - 1  # the largest event id the registry can hold

log = logging.getLogger("unlearnkit.service")

_ACTOR = re.compile(r"[^A-Za-z0-9_.@:+-]")


def create_app(settings: ServeSettings, model: LanguageModel | None = None) -> FastAPI:
    """The gateway app. ``model`` is the upstream (loaded from ``settings.model`` when
    None); with ``settings.guard == "none"`` a ``Guard`` passed as ``model`` is used
    as the guard itself (its targets follow the registry)."""
    model_from_settings = model is None
    if model is None:
        from unlearnkit.models.loading import load_model

        model = load_model(settings.model)
    stack = GuardStack(model, settings.guard, settings.guard_options)
    prefixes = _enable_prefix_cache(model) if settings.prefix_cache else None
    registry = open_registry(settings.db_path)
    engine = Engine(stack, registry, settings)
    verifier = Verifier(engine, registry, settings) if settings.verify_targets else None
    served = settings.served_model_name or _base_name(model)
    created = now()
    # The ids a request's "model" may name: the served id, and the spec the server was started with
    # ("smollm2" and its aliases for the embedded default). Any other id is a 404, as OpenAI answers.
    accepted = {served}
    if settings.model:
        accepted.add(str(settings.model))
    elif model_from_settings:
        from unlearnkit.models.loading import EMBEDDED_ALIASES

        accepted |= set(EMBEDDED_ALIASES)

    def check_model(name: str | None) -> None:
        if name is not None and name not in accepted:
            raise APIError(404, f"the model '{name}' does not exist; this server serves '{served}'", param="model",
                           code="model_not_found")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(engine.start)
        await run_in_threadpool(registry.record, "server.start", "gateway",
                                {"guard": settings.guard, "model": served})
        if verifier is not None:
            verifier.start()
        try:
            yield
        finally:
            if verifier is not None:
                verifier.request_stop()
            await run_in_threadpool(engine.stop)
            if verifier is not None:
                await run_in_threadpool(verifier.join)
            try:
                registry.record("server.stop", "gateway", {})
            except RegistryUnavailable as exc:
                log.warning("server.stop not recorded: %s", exc)
            finally:
                registry.close()

    app = FastAPI(title="unlearnkit gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.engine, app.state.registry, app.state.stack = settings, engine, registry, stack
    app.state.verifier = verifier

    # -- errors ---------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RegistryUnavailable)
    async def _registry_down(request: Request, exc: RegistryUnavailable):
        log.warning("%s", exc)
        return JSONResponse(registry_unavailable().body(), status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = {404: f"no route {request.url.path}", 405: f"method {request.method} is not allowed on "
                   f"{request.url.path}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(message, kind, None, None), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        """A 400 naming the first bad parameter and what is wrong with it (never echoing its value)."""
        first = (exc.errors() or [{}])[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")
               and not str(p).startswith("function-")]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid value")
        message = f"invalid value for '{param}': {msg}" if param else f"invalid request parameters: {msg}"
        return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_value"), status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(error_body("internal error", "server_error", None, "internal_error"), status_code=500)

    # -- auth -------------------------------------------------------------------------
    def check_api_key(request: Request) -> None:
        if settings.api_key and not _bearer_matches(request, settings.api_key):
            raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                           type="invalid_request_error", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    def check_admin(request: Request) -> str:
        if not settings.admin_token:
            raise APIError(403, f"the admin API is disabled: start the server with {ADMIN_TOKEN_ENV} set",
                           type="permission_error", code="admin_disabled")
        if not _bearer_matches(request, settings.admin_token):
            raise APIError(401, "invalid or missing admin token: send 'Authorization: Bearer <admin token>'",
                           type="authentication_error", code="invalid_admin_token",
                           headers={"WWW-Authenticate": "Bearer"})
        who = _ACTOR.sub("", request.headers.get("x-unlearnkit-actor", ""))[:100]
        return f"admin:{who}" if who else "admin"

    # -- public routes ------------------------------------------------------------------
    upstream_check = _upstream_health(model)

    @app.get("/health")
    async def health():
        """200 when the worker runs and the upstream answers; 503 otherwise (without the upstream's address)."""
        if not engine.alive:
            return JSONResponse({"status": "unavailable", "model": served}, status_code=503)
        try:
            await run_in_threadpool(registry.version)
        except RegistryUnavailable:
            return JSONResponse({"status": "registry_unavailable", "model": served}, status_code=503)
        if upstream_check is not None and await run_in_threadpool(upstream_check) is not None:
            return JSONResponse({"status": "upstream_unavailable", "model": served}, status_code=503)
        return JSONResponse({"status": "ok", "model": served})

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_api_key(request)
        return ModelList(data=[ModelCard(id=served, created=created)]).model_dump()

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        check_api_key(request)
        if model_id != served:
            raise APIError(404, f"the model '{model_id}' does not exist; this server serves '{served}'",
                           param="model", code="model_not_found")
        return ModelCard(id=served, created=created).model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_api_key(request)
        body = await _read_json(request, settings.max_request_bytes)
        req = _validate(ChatCompletionRequest, body)
        check_model(req.model)
        messages = req.as_prompt()
        max_new = _max_tokens(req.requested_max_tokens(), settings,
                              "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens")
        _check_n(req.n, settings)
        rid = new_id("chatcmpl")
        job = Job(rid, "chat", [messages] * req.n, chat=True, max_new_tokens=max_new, stops=req.stops(),
                  **_sampling(req), audit_prompt=messages, stream=bool(req.stream))
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return await _stream(engine, job, request, _ChatChunks(rid, served, req.n, include_usage))
        answers = await _answer(engine, job, request)
        usage = _usage(answers, shared_prompt=True)
        return ChatCompletion(
            id=rid, created=now(), model=served, usage=usage,
            choices=[ChatChoice(index=k, message=AssistantMessage(content=a.text), finish_reason=a.finish_reason)
                     for k, a in enumerate(answers)],
        ).model_dump()

    @app.post("/v1/completions")
    async def completions(request: Request):
        check_api_key(request)
        body = await _read_json(request, settings.max_request_bytes)
        req = _validate(CompletionRequest, body)
        check_model(req.model)
        prompts = req.prompts()
        max_new = _max_tokens(req.requested_max_tokens(), settings, "max_tokens")
        _check_n(req.n, settings)
        if len(prompts) * req.n > settings.max_batch_size * 4:
            raise APIError(400, f"at most {settings.max_batch_size * 4} completions per request (prompts x n)",
                           param="prompt", code="too_many_prompts")
        rid = new_id("cmpl")
        expanded = [p for p in prompts for _ in range(req.n)]
        job = Job(rid, "completions", expanded, chat=False, max_new_tokens=max_new, stops=req.stops(),
                  **_sampling(req), audit_prompt=req.prompt, stream=bool(req.stream))
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return await _stream(engine, job, request, _CompletionChunks(
                rid, served, expanded if req.echo else None, req.n, include_usage))
        answers = await _answer(engine, job, request)
        if req.echo:
            answers = [Answer(p + a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens)
                       for p, a in zip(expanded, answers)]
        usage = _usage(answers, shared_prompt=False, n=req.n)
        choices = [CompletionChoice(index=k, text=a.text, finish_reason=a.finish_reason)
                   for k, a in enumerate(answers)]
        return Completion(id=rid, created=now(), model=served, choices=choices, usage=usage).model_dump()

    # -- admin routes ---------------------------------------------------------------------
    @app.get("/admin/targets")
    async def list_targets(request: Request):
        check_admin(request)
        version, items = await run_in_threadpool(registry.list)
        return {"object": "list", "version": version, "data": items}

    @app.post("/admin/targets")
    async def add_targets(request: Request):
        actor = check_admin(request)
        raw = await _read_body(request, settings.max_admin_request_bytes)
        targets, source = _parse_targets(raw, request.headers.get("content-type", ""), settings)
        detail = {"client": request.client.host if request.client else None, "source": source}
        result = await run_in_threadpool(registry.add, targets, actor, detail)
        if verifier is not None and (result["added"] or result["updated"]):
            verifier.schedule(result["added"] + result["updated"])
        return JSONResponse(result, status_code=201 if result["added"] else 200)

    @app.get("/admin/targets/{name:path}")
    async def get_target(name: str, request: Request):
        check_admin(request)
        _, items = await run_in_threadpool(registry.list)
        item = _find_target(items, name)
        if item is None:
            raise APIError(404, f"no target named '{name}': use a name or alias as GET /admin/targets lists it",
                           param="name", code="target_not_found")
        if verifier is not None:
            verification = await run_in_threadpool(verifier.latest, item["name"])
        else:
            verification = await run_in_threadpool(latest_recorded, registry, item["name"])
        if verification is None:
            verification = {"status": "off" if verifier is None else "none"}
        return {"object": "target", "target": item, "verification": verification}

    @app.delete("/admin/targets/{name:path}")
    async def remove_target(name: str, request: Request):
        actor = check_admin(request)
        detail = {"client": request.client.host if request.client else None}
        result = await run_in_threadpool(registry.remove, [name], actor, detail)
        if not result["removed"]:  # the name as the matcher reads it: case, Unicode look-alikes, spacing
            listed = await run_in_threadpool(lambda: registry.snapshot().targets)
            wanted = compact(name)
            same = [t.name for t in listed if wanted and wanted in {compact(n) for n in (t.name, *t.aliases)}]
            if len(same) == 1:
                result = await run_in_threadpool(registry.remove, same, actor, detail)
        if not result["removed"]:
            raise APIError(404, f"no target named '{name}': use a name or alias as GET /admin/targets lists it",
                           param="name", code="target_not_found")
        return result

    @app.get("/admin/audit")
    async def audit(request: Request, after: int = 0, limit: int = 100, action: str | None = None):
        check_admin(request)
        if not 0 <= after <= SQLITE_MAX_INT:
            raise APIError(400, f"'after' must be an event id between 0 and {SQLITE_MAX_INT} (got {after})",
                           param="after", code="invalid_value")
        rows = await run_in_threadpool(lambda: registry.audit(after=after, limit=limit, action=action))
        return {"object": "list", "data": rows}

    @app.get("/admin/stats")
    async def stats(request: Request):
        check_admin(request)
        registry_version = await run_in_threadpool(registry.version)  # what the next batch will enforce
        return {**engine.stats, "queue": engine.queue_depth(), **stack.describe(), "registry_version": registry_version,
                "prefix_cache": dict(prefixes.stats) if prefixes is not None else "off"}

    return app


# -- helpers ---------------------------------------------------------------------------------


def _base_name(model: LanguageModel) -> str:
    """The id clients see: the upstream's name; for an endpoint its model name only, never its address."""
    model = leaf(model)
    if hasattr(model, "base_url"):
        return str(getattr(model, "_model", None) or "model")
    return getattr(model, "name", "model") or "model"


def _enable_prefix_cache(model: LanguageModel):
    """Turn on the reuse of the shared start of prompts (the guard's system prompt) on the model that holds the
    weights, when it has one (``models/prefix_cache.py``); its counters, or None."""
    enable = getattr(leaf(model), "enable_prefix_cache", None)
    return enable() if callable(enable) else None


def _find_target(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The listed target ``name`` designates, as DELETE reads it: its name, an alias, or (when only one
    target fits) the name or alias as the matcher reads it (case, look-alike letters, spacing)."""
    exact = next((i for i in items if i["name"] == name), None)
    exact = exact or next((i for i in items if name in (i.get("aliases") or ())), None)
    if exact is not None:
        return exact
    wanted = compact(name)
    same = [i for i in items if wanted and wanted in {compact(n) for n in (i["name"], *(i.get("aliases") or ()))}]
    return same[0] if len(same) == 1 else None


def _bearer_matches(request: Request, secret: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), secret.encode("utf-8"))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing anything over ``limit`` bytes with a 413 (checked on the
    declared length first, then while reading, for chunked uploads). An oversize
    body is read and discarded (up to 64 MiB) so the client sees the 413 rather
    than a connection reset mid-upload."""
    declared = request.headers.get("content-length")
    over = False
    if declared is not None:
        try:
            over = int(declared) > limit
        except ValueError:
            raise APIError(400, "invalid Content-Length header", code="invalid_request") from None
    body = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if over:
            if seen > _DRAIN_CAP:
                break
            continue
        body += chunk
        if len(body) > limit:
            over, body = True, bytearray()
    if over:
        raise APIError(413, f"the request body is larger than this server's limit of {limit} bytes",
                       code="request_too_large")
    return bytes(body)


_DRAIN_CAP = 64 * 1024 * 1024


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _loads(raw: bytes | str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({_short(exc)})", code="invalid_json") from None


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    raw = await _read_body(request, limit)
    if not raw.strip():
        raise APIError(400, "the request body is empty: send a JSON object", code="invalid_json")
    body = _loads(raw)
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _validate(model_cls, body: dict[str, Any]):
    try:
        return model_cls.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _max_tokens(requested: int | None, settings: ServeSettings, param: str) -> int:
    if requested is None:
        return settings.default_max_tokens
    if requested < 1:
        raise APIError(400, f"'{param}' must be at least 1", param=param, code="invalid_value")
    if requested > settings.max_tokens_limit:
        raise APIError(400, f"'{param}' is {requested}; this server allows at most {settings.max_tokens_limit}",
                       param=param, code="max_tokens_exceeded")
    return requested


def _check_n(n: int, settings: ServeSettings) -> None:
    if n > settings.max_n:
        raise APIError(400, f"'n' is {n}; this server allows at most {settings.max_n}", param="n",
                       code="invalid_value")


def _sampling(req) -> dict[str, Any]:
    """temperature omitted or 0: greedy (deterministic); > 0: sampling."""
    temperature = req.temperature
    if temperature is None or temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": float(temperature), "top_p": float(req.top_p or 1.0),
            "seed": req.seed}


DISCONNECT_POLL_S = 0.25
HEALTH_CACHE_S = 2.0


def _upstream_health(model):
    """A cached ``health()`` of the endpoint at the bottom of the guard chain, or None for a local model."""
    check = getattr(leaf(model), "health", None)
    if not callable(check):
        return None
    last: dict[str, Any] = {"at": -HEALTH_CACHE_S, "value": None}

    def cached() -> str | None:
        now = time.monotonic()
        if now - last["at"] >= HEALTH_CACHE_S:
            last["value"], last["at"] = check(), now
        return last["value"]

    return cached


async def _check_still_wanted(engine: Engine, job: Job, request: Request | None) -> None:
    """Abandon ``job`` (the worker drops what is left of it) when its client has left (408) or its deadline has
    passed (504)."""
    if request is not None and await request.is_disconnected():
        job.abandon()
        raise APIError(408, "the client closed the connection", type="invalid_request_error", code="client_closed")
    if job.deadline is not None and time.perf_counter() > job.deadline:
        job.abandon()
        raise APIError(504, f"the request was not answered within {engine.settings.request_timeout_s:g} s; "
                       "retry, or ask for fewer tokens", type="server_error", code="timeout")


async def _answer(engine: Engine, job: Job, request: Request | None = None) -> list[Answer]:
    """Wait for the worker's answer; a client that leaves, or a deadline that passes, abandons the job
    (the worker drops what is left of it) instead of letting it run on for nobody."""
    future = engine.submit(job)
    waiting = asyncio.wrap_future(future)
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            await _check_still_wanted(engine, job, request)
    except asyncio.CancelledError:  # the server cancelled the handler: the worker skips or discards it
        job.abandon()
        future.cancel()
        raise


def _usage(answers: list[Answer], shared_prompt: bool, n: int = 1) -> Usage:
    if shared_prompt:
        prompt = answers[0].prompt_tokens if answers else 0
    else:
        prompt = sum(a.prompt_tokens for a in answers[::max(1, n)])
    completion = sum(a.completion_tokens for a in answers)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _sse(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


_END = object()  # the job's future is resolved


async def _stream(engine: Engine, job: Job, request: Request, chunks) -> StreamingResponse:
    """Send a streamed job's answers as the worker releases them. The response starts once the request
    passed the worker's checks, so an error found there is still an HTTP error; a client that leaves, or
    a deadline that passes, abandons the job."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def listener(event) -> None:  # worker and model threads
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass

    job.listener = listener
    future = engine.submit(job)
    future.add_done_callback(lambda _: listener(_END))
    try:
        while True:
            event = await _next_event(events, job, request, engine)
            if isinstance(event, Started):
                break
            if event is _END:
                future.result()  # the error found before the stream started, as an HTTP error
                raise APIError(500, "the request ended before its answer started", type="server_error",
                               code="internal_error")
    except BaseException:
        job.abandon()
        raise

    async def body():
        done = False
        try:
            for line in chunks.start():
                yield line
            while True:
                try:
                    event = await _next_event(events, job, request, engine)
                except APIError as exc:
                    yield _event(exc.body())
                    return
                if isinstance(event, Delta):
                    yield chunks.delta(event.index, event.text)
                elif isinstance(event, Done):
                    yield chunks.done(event.index, event.answer)
                elif event is _END:
                    exc = future.exception()
                    if exc is not None:
                        yield _event(exc.body() if isinstance(exc, APIError) else
                                     error_body("internal error", "server_error", None, "internal_error"))
                        return
                    for line in chunks.end(future.result()):
                        yield line
                    done = True
                    return
        finally:
            if not done:
                job.abandon()

    return _sse(body())


async def _next_event(events: asyncio.Queue, job: Job, request: Request, engine: Engine):
    """The next event of a streamed job; raises APIError when the client left or the deadline passed."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            pass
        await _check_still_wanted(engine, job, request)


class _ChatChunks:
    """``chat.completion.chunk`` events: the role first, then each answer's text as it comes, its
    finish reason, the usage (if asked for) and ``[DONE]``."""

    def __init__(self, rid: str, model: str, n: int, include_usage: bool):
        self.rid, self.model, self.n, self.include_usage = rid, model, n, include_usage
        self.created = now()

    def _chunk(self, choices, usage=None) -> str:
        return _event(ChatCompletionChunk(id=self.rid, created=self.created, model=self.model, choices=choices,
                                          usage=usage).model_dump(exclude_none=False))

    def start(self):
        for k in range(self.n):
            yield self._chunk([ChunkChoice(index=k, delta=ChunkDelta(role="assistant", content=""))])

    def delta(self, index: int, text: str) -> str:
        return self._chunk([ChunkChoice(index=index, delta=ChunkDelta(content=text))])

    def done(self, index: int, answer: Answer) -> str:
        return self._chunk([ChunkChoice(index=index, delta=ChunkDelta(), finish_reason=answer.finish_reason)])

    def end(self, answers: list[Answer]):
        if self.include_usage:
            yield self._chunk([], _usage(answers, shared_prompt=True))
        yield "data: [DONE]\n\n"


class _CompletionChunks:
    """``text_completion`` events: each answer's text as it comes (after its prompt with ``echo``), its
    finish reason, the usage (if asked for) and ``[DONE]``."""

    def __init__(self, rid: str, model: str, echo: list[str] | None, n: int, include_usage: bool):
        self.rid, self.model, self.echo, self.n, self.include_usage = rid, model, echo, n, include_usage
        self.created = now()

    def _chunk(self, index: int, text: str, finish_reason: str | None = None) -> str:
        return _event(Completion(id=self.rid, created=self.created, model=self.model, usage=None, choices=[
            CompletionChoice(index=index, text=text, finish_reason=finish_reason)]).model_dump())

    def start(self):
        for k, prompt in enumerate(self.echo or ()):
            if prompt:
                yield self._chunk(k, prompt)

    def delta(self, index: int, text: str) -> str:
        return self._chunk(index, text)

    def done(self, index: int, answer: Answer) -> str:
        return self._chunk(index, "", answer.finish_reason)

    def end(self, answers: list[Answer]):
        if self.include_usage:
            yield _event(Completion(id=self.rid, created=self.created, model=self.model, choices=[],
                                    usage=_usage(answers, shared_prompt=False, n=self.n)).model_dump())
        yield "data: [DONE]\n\n"


def _parse_targets(raw: bytes, content_type: str, settings: ServeSettings):
    """Targets from an admin body: one target, a list, {"targets": [...]}, {"records": [...]}
    (a forget data file's question/answer records), or JSON Lines of either."""
    from unlearnkit.data.records import QARecord
    from unlearnkit.data.targets import Target, targets_from_records

    if not raw.strip():
        raise APIError(400, "the request body is empty: send a target, a list of targets or forget records",
                       code="invalid_json")
    ctype = content_type.lower()
    if any(k in ctype for k in ("ndjson", "jsonl", "jsonlines")):
        items: Any = []
        for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    items.append(_loads(line))
                except APIError:
                    raise APIError(400, f"line {n} of the JSON Lines body is not valid JSON",
                                   code="invalid_json") from None
        source = "jsonl"
    else:
        items = _loads(raw)
        source = "json"
    if isinstance(items, dict):
        if "targets" in items and set(items) <= {"targets"}:
            items, source = items["targets"], source + ":targets"
        elif "records" in items and set(items) <= {"records"}:
            items, source = items["records"], source + ":records"
        else:
            items = [items]
    if not isinstance(items, list) or not items:
        raise APIError(400, "send a target object, a non-empty list of targets, {\"targets\": [...]} or "
                       "{\"records\": [...]}", code="invalid_targets")
    if len(items) > settings.max_targets_per_request:
        raise APIError(400, f"at most {settings.max_targets_per_request} targets or records per request",
                       code="too_many_targets")
    targets: list[Target] = []
    records: list[QARecord] = []
    for k, item in enumerate(items):
        try:
            if isinstance(item, str):
                targets.append(Target(**TargetIn(name=item).model_dump()))
            elif isinstance(item, dict) and "question" in item:
                r = ForgetRecordIn.model_validate(item)
                records.append(QARecord(question=r.question, answer=r.answer, subject=r.subject))
            elif isinstance(item, dict):
                t = TargetIn.model_validate(item)
                targets.append(Target(name=t.name, aliases=tuple(t.aliases), description=t.description,
                                      facts=tuple(t.facts)))
            else:
                raise APIError(400, f"item {k} is neither a target nor a forget record", code="invalid_targets")
        except ValidationError as exc:
            err = validation_error(exc)
            raise APIError(400, f"item {k}: {err.message}", param=err.param, code="invalid_targets") from None
    if records:
        targets.extend(targets_from_records(records))
    return targets, source

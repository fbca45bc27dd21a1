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

This module wires the routes; beside it: ``http_errors`` (every error as an OpenAI error body), ``auth``
(API key, admin token), ``request_body`` (size limit, strict JSON, schema validation), ``answers``
(waiting for the worker, usage), ``sse`` (streamed answers) and ``admin_payloads`` (target bodies).

Prefill (``prefix_cache``, on by default): the guard puts the same system prompt before every request;
the model keeps the keys and values of the last prompt and reads only what a new prompt does not share
with it (``models/prefix_cache.py``), so a long guard instruction costs its prefill once, not per request.

Verification (``verify_targets``, on by default): each added or changed target is probed in the
background through the engine's low-priority line, and the figures are written to the audit log as a
``target.verified`` event (``verification.py``).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from unlearnkit.data.target_matching import compact
from unlearnkit.models.base import LanguageModel, leaf
from unlearnkit.service.admin_payloads import parse_targets
from unlearnkit.service.answers import usage_of, wait_for_answers
from unlearnkit.service.auth import check_admin, check_api_key
from unlearnkit.service.engine import Answer, Engine, Job
from unlearnkit.service.guard_stack import GuardStack
from unlearnkit.service.http_errors import install_error_handlers
from unlearnkit.service.registry_base import RegistryUnavailable, open_registry
from unlearnkit.service.request_body import read_body, read_json_object, validated
from unlearnkit.service.schemas import (
    APIError,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ModelCard,
    ModelList,
    new_id,
    now,
)
from unlearnkit.service.settings import ServeSettings
from unlearnkit.service.sse import ChatChunks, CompletionChunks, stream_job
from unlearnkit.service.verification import Verifier, latest_recorded

SQLITE_MAX_INT = 2**63 - 1  # the largest event id the registry can hold

log = logging.getLogger("unlearnkit.service")

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
    install_error_handlers(app)

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
        check_api_key(request, settings)
        return ModelList(data=[ModelCard(id=served, created=created)]).model_dump()

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request):
        check_api_key(request, settings)
        if model_id != served:
            raise APIError(404, f"the model '{model_id}' does not exist; this server serves '{served}'",
                           param="model", code="model_not_found")
        return ModelCard(id=served, created=created).model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_api_key(request, settings)
        body = await read_json_object(request, settings.max_request_bytes)
        req = validated(ChatCompletionRequest, body)
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
            return await stream_job(engine, job, request, ChatChunks(rid, served, req.n, include_usage))
        answers = await wait_for_answers(engine, job, request)
        usage = usage_of(answers, shared_prompt=True)
        return ChatCompletion(
            id=rid, created=now(), model=served, usage=usage,
            choices=[ChatChoice(index=k, message=AssistantMessage(content=a.text), finish_reason=a.finish_reason)
                     for k, a in enumerate(answers)],
        ).model_dump()

    @app.post("/v1/completions")
    async def completions(request: Request):
        check_api_key(request, settings)
        body = await read_json_object(request, settings.max_request_bytes)
        req = validated(CompletionRequest, body)
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
            return await stream_job(engine, job, request, CompletionChunks(
                rid, served, expanded if req.echo else None, req.n, include_usage))
        answers = await wait_for_answers(engine, job, request)
        if req.echo:
            answers = [Answer(p + a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens)
                       for p, a in zip(expanded, answers)]
        usage = usage_of(answers, shared_prompt=False, n=req.n)
        choices = [CompletionChoice(index=k, text=a.text, finish_reason=a.finish_reason)
                   for k, a in enumerate(answers)]
        return Completion(id=rid, created=now(), model=served, choices=choices, usage=usage).model_dump()

    # -- admin routes ---------------------------------------------------------------------
    @app.get("/admin/targets")
    async def list_targets(request: Request):
        check_admin(request, settings)
        version, items = await run_in_threadpool(registry.list)
        return {"object": "list", "version": version, "data": items}

    @app.post("/admin/targets")
    async def add_targets(request: Request):
        actor = check_admin(request, settings)
        raw = await read_body(request, settings.max_admin_request_bytes)
        targets, source = parse_targets(raw, request.headers.get("content-type", ""), settings)
        detail = {"client": request.client.host if request.client else None, "source": source}
        result = await run_in_threadpool(registry.add, targets, actor, detail)
        if verifier is not None and (result["added"] or result["updated"]):
            verifier.schedule(result["added"] + result["updated"])
        return JSONResponse(result, status_code=201 if result["added"] else 200)

    @app.get("/admin/targets/{name:path}")
    async def get_target(name: str, request: Request):
        check_admin(request, settings)
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
        actor = check_admin(request, settings)
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
        check_admin(request, settings)
        if not 0 <= after <= SQLITE_MAX_INT:
            raise APIError(400, f"'after' must be an event id between 0 and {SQLITE_MAX_INT} (got {after})",
                           param="after", code="invalid_value")
        rows = await run_in_threadpool(lambda: registry.audit(after=after, limit=limit, action=action))
        return {"object": "list", "data": rows}

    @app.get("/admin/stats")
    async def stats(request: Request):
        check_admin(request, settings)
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



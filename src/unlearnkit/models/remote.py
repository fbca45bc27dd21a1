"""A model behind an OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, Ollama, unlearnkit's gateway).

``OpenAIChatModel`` is a ``LanguageModel`` that generates through ``POST {base_url}/chat/completions``
(one request per prompt, a small thread pool for a batch). It cannot ``score()``: the chat API
returns no teacher-forced log-probabilities of a *given* answer, so models behind an endpoint are
evaluated by generation (ROUGE, keyword leak rate).

``load_model("http://127.0.0.1:8080/v1#my-model")`` builds one: the part before ``#`` is the
base URL (``/v1`` is appended when the URL has no path), the part after it the model name
(optional: without it the first model listed by ``GET /models`` is used). The API key comes
from the environment variable ``OPENAI_API_KEY`` (configurable; none is needed by local servers).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.base import LanguageModel, Prompt, as_messages, current_cancellation


class RemoteModelError(UnlearnkitError, RuntimeError):
    """An OpenAI-compatible endpoint failed or answered something unusable."""


class EndpointUnreachableError(RemoteModelError, ConnectionError):
    """The endpoint could not be reached (connection refused, DNS, timeout) after every retry."""


class EndpointHTTPError(RemoteModelError):
    """The endpoint answered an HTTP error status (after retries where a retry made sense)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class MalformedResponseError(RemoteModelError, ValueError):
    """The endpoint answered, but not with the JSON an OpenAI-compatible chat API returns."""


class ScoringUnsupportedError(RemoteModelError, NotImplementedError):
    """Teacher-forced scoring is impossible over a chat-completions API."""


RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class Usage:
    """Token usage of one request, as the endpoint reported it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "seconds": self.seconds}


def normalise_base_url(url: str) -> str:
    """``http://h:p`` -> ``http://h:p/v1``; a trailing ``/chat/completions`` or ``/`` is dropped."""
    url = url.strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise RemoteModelError(f"'{url}' is not an http(s) URL: give e.g. http://127.0.0.1:8080/v1")
    if parts.path in {"", "/"}:
        url = url + "/v1"
    return url


class OpenAIChatModel(LanguageModel):
    """Generation through an OpenAI-compatible ``/chat/completions`` endpoint.

    * ``base_url``: e.g. ``http://127.0.0.1:8080/v1`` (``/v1`` added when the URL has no path);
    * ``model``: the model name sent in each request (None: the first of ``GET /models``,
      or ``"default"`` when the server does not list models);
    * ``api_key_env``: the environment variable holding the API key (read when the model is
      built; never stored in ``describe()`` or logged). ``api_key`` overrides it;
    * ``timeout``: seconds per request; ``max_retries``: retries after the first attempt on
      connection errors, timeouts, HTTP 429 and 5xx, with exponential backoff
      (``backoff * 2**attempt`` seconds plus jitter, capped by ``max_backoff``; a
      ``Retry-After`` header is honoured up to that cap);
    * ``concurrency``: requests in flight at once for a batch of prompts.

    ``usage`` holds the cumulative calls and prompt/completion tokens the endpoint reported;
    ``generate_with_usage`` returns each completion with its own ``Usage``.
    """

    def __init__(self, base_url: str, model: str | None = None, *, api_key_env: str = "OPENAI_API_KEY",
                 api_key: str | None = None, timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 max_backoff: float = 8.0, concurrency: int = 4, system_prompt: str | None = None,
                 name: str | None = None, transport=None):
        import httpx

        self.base_url = normalise_base_url(base_url)
        self._model = model or None
        self.api_key_env = api_key_env
        key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.concurrency = max(1, int(concurrency))
        self.system_prompt = system_prompt
        self.name = name or (f"{model}@{self.base_url}" if model else self.base_url)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout), headers=headers, transport=transport)
        self._lock = threading.Lock()
        self.usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # -- construction from a spec ------------------------------------------------
    @classmethod
    def from_url(cls, spec: str, **kwargs) -> OpenAIChatModel:
        """``http(s)://host[:port][/path][#model-name]`` -> a model (see the module docstring)."""
        url, _, model = str(spec).partition("#")
        return cls(url, model or None, **kwargs)

    @property
    def model(self) -> str:
        """The model name sent with each request (resolved from ``GET /models`` on first use)."""
        if self._model is None:
            self._model = self._discover_model()
        return self._model

    def _discover_model(self) -> str:
        try:
            data = self._request("GET", "/models")
            models = data.get("data") if isinstance(data, dict) else None
            if models and isinstance(models[0], dict) and models[0].get("id"):
                return str(models[0]["id"])
        except (EndpointHTTPError, MalformedResponseError):
            pass
        return "default"

    def health(self, timeout: float = 2.0) -> str | None:
        """None when the endpoint answers ``GET /models`` within ``timeout`` (one try), else why not."""
        import httpx

        try:
            response = self._client.get(self.base_url + "/models", timeout=timeout)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        return None if response.status_code < 500 else f"HTTP {response.status_code}"

    def describe(self) -> dict:
        return {"name": self.name, "kind": type(self).__name__, "base_url": self.base_url,
                "model": self._model, "api_key_env": self.api_key_env}

    def spec(self) -> str:
        """The string ``load_model`` turns back into this model."""
        return f"{self.base_url}#{self._model}" if self._model else self.base_url

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- HTTP with retries -----------------------------------------------------------
    def _sleep_for(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt)) * (1 + 0.1 * random.random())
        if retry_after:
            try:
                delay = max(delay, min(self.max_backoff, float(retry_after)))
            except ValueError:
                pass
        return delay

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        url = self.base_url + path
        with self._send(method, path, payload) as response:
            try:
                return response.json()
            except (json.JSONDecodeError, ValueError) as exc:
                raise MalformedResponseError(
                    f"{url} answered malformed JSON (not an OpenAI-compatible API?): {exc}; body starts "
                    f"{_snippet(response.text)!r}") from exc

    @contextlib.contextmanager
    def _send(self, method: str, path: str, payload: dict | None = None, stream: bool = False):
        """The response to one request, after the retries; with ``stream`` its body is read as it arrives."""
        import httpx

        url = self.base_url + path
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                request = self._client.build_request(method, url, json=payload)
                response = self._client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = EndpointUnreachableError(
                    f"could not reach {url}: is the server running? ({type(exc).__name__}: {exc}; "
                    f"{attempt + 1} attempt(s))")
            except httpx.TimeoutException as exc:
                last = EndpointUnreachableError(
                    f"{url} did not answer within {self.timeout:g} s ({type(exc).__name__}; {attempt + 1} "
                    "attempt(s)): the server is overloaded or the timeout is too short")
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                last = EndpointUnreachableError(
                    f"the connection to {url} broke ({type(exc).__name__}: {exc}; {attempt + 1} attempt(s))")
            else:
                if response.status_code >= 400 and stream:
                    response.read()
                    response.close()
                if response.status_code in RETRY_STATUS:
                    last = EndpointHTTPError(
                        f"{url} answered HTTP {response.status_code} after {attempt + 1} attempt(s): "
                        f"{_snippet(response.text)}", response.status_code)
                    if attempt < self.max_retries:
                        time.sleep(self._sleep_for(attempt, response.headers.get("retry-after")))
                        continue
                    raise last
                if response.status_code >= 400:
                    hint = {401: " (check the API key in $" + self.api_key_env + ")",
                            403: " (check the API key in $" + self.api_key_env + ")",
                            404: " (check the base URL: it should end in /v1, and the model name)"}
                    raise EndpointHTTPError(
                        f"{url} answered HTTP {response.status_code}{hint.get(response.status_code, '')}: "
                        f"{_snippet(response.text)}", response.status_code)
                try:
                    yield response
                finally:
                    response.close()
                return
            if attempt < self.max_retries:
                time.sleep(self._sleep_for(attempt, None))
        assert last is not None
        raise last

    # -- one completion ----------------------------------------------------------------
    def _payload(self, prompt: Prompt, chat: bool, max_new_tokens: int, do_sample: bool, temperature: float,
                 top_p: float, seed: int | None) -> tuple[str, dict]:
        payload: dict = {"model": self.model, "max_tokens": int(max_new_tokens)}
        if do_sample:
            payload.update(temperature=float(temperature), top_p=float(top_p))
        else:
            payload["temperature"] = 0.0
        if seed is not None:
            payload["seed"] = int(seed)
        if chat:
            payload["messages"] = as_messages(prompt, self.system_prompt)
            return "/chat/completions", payload
        if not isinstance(prompt, str):
            raise TypeError("chat=False needs plain string prompts")
        payload["prompt"] = prompt
        return "/completions", payload

    def _complete(self, prompt: Prompt, chat: bool, **gen) -> tuple[str, Usage]:
        path, payload = self._payload(prompt, chat, **gen)
        t0 = time.perf_counter()
        data = self._request("POST", path, payload)
        seconds = time.perf_counter() - t0
        text = _completion_text(data, chat, self.base_url + path)
        usage = data.get("usage") if isinstance(data, dict) else None
        u = Usage(seconds=seconds)
        if isinstance(usage, dict):
            u.prompt_tokens = _as_int(usage.get("prompt_tokens"))
            u.completion_tokens = _as_int(usage.get("completion_tokens"))
        with self._lock:
            self.usage["calls"] += 1
            self.usage["prompt_tokens"] += u.prompt_tokens
            self.usage["completion_tokens"] += u.completion_tokens
        return text.strip(), u

    def _stream_complete(self, prompt: Prompt, chat: bool, on_text, check, **gen) -> str:
        """One completion with ``stream: true``: ``on_text`` gets the answer so far after every event; reading
        stops (and the connection closes, which ends the work upstream) once ``check()`` says nobody waits."""
        import httpx

        path, payload = self._payload(prompt, chat, **gen)
        payload["stream"] = True
        url = self.base_url + path
        text = ""
        with self._send("POST", path, payload, stream=True) as response:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # a server that ignores "stream": the whole answer as one JSON body
                response.read()
                try:
                    data = response.json()
                except (json.JSONDecodeError, ValueError) as exc:
                    raise MalformedResponseError(f"{url} answered neither an event stream nor JSON: "
                                                 f"{_snippet(response.text)!r}") from exc
                text = _completion_text(data, chat, url)
            else:
                try:
                    for line in response.iter_lines():
                        if check is not None and check():
                            break
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        piece = _event_text(data, chat, url)
                        if piece:
                            text += piece
                            on_text(text.lstrip())
                except (httpx.TransportError, httpx.StreamError) as exc:
                    raise EndpointUnreachableError(
                        f"the stream from {url} broke after {len(text)} characters ({type(exc).__name__}: {exc})"
                    ) from exc
        with self._lock:
            self.usage["calls"] += 1
        return text.strip()

    # -- interface -------------------------------------------------------------------
    streams = True

    def stream_generate(self, prompts, *, on_text, chat=True, max_new_tokens=200, do_sample=False, temperature=1.0,
                        top_p=1.0, batch_size=8, seed=None, progress=None) -> list[str]:
        """``generate`` with ``stream: true`` (vLLM, llama.cpp server and Ollama send the answer as it is
        generated); the endpoint's usage is not reported this way (``usage`` counts the calls only)."""
        prompts = list(prompts)
        if not prompts:
            return []
        gen = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "temperature": temperature,
               "top_p": top_p}
        _ = self.model
        check = current_cancellation()  # the caller's, for the pool's threads too
        seeds = [None if seed is None else seed + i for i in range(len(prompts))]

        def one(i: int) -> str:
            text = self._stream_complete(prompts[i], chat, lambda t: on_text(i, t), check, seed=seeds[i], **gen)
            on_text(i, text)
            return text

        if len(prompts) == 1 or self.concurrency == 1:
            return [one(i) for i in range(len(prompts))]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(one, range(len(prompts))))

    def generate_with_usage(self, prompts: Sequence[Prompt], *, chat: bool = True, max_new_tokens: int = 200,
                            do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                            batch_size: int = 8, seed: int | None = None,
                            progress: str | None = None) -> list[tuple[str, Usage]]:
        """Like ``generate`` but each completion comes with the token usage the endpoint reported."""
        prompts = list(prompts)
        if not prompts:
            return []
        gen = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "temperature": temperature,
               "top_p": top_p}
        _ = self.model  # resolve the name once, before the threads start
        seeds = [None if seed is None else seed + i for i in range(len(prompts))]
        if len(prompts) == 1 or self.concurrency == 1:
            return [self._complete(p, chat, seed=s, **gen) for p, s in zip(prompts, seeds)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            futures = [pool.submit(self._complete, p, chat, seed=s, **gen) for p, s in zip(prompts, seeds)]
            return [f.result() for f in futures]

    def generate(self, prompts, *, chat=True, max_new_tokens=200, do_sample=False, temperature=1.0, top_p=1.0,
                 batch_size=8, seed=None, progress=None) -> list[str]:
        return [text for text, _ in self.generate_with_usage(
            prompts, chat=chat, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
            top_p=top_p, batch_size=batch_size, seed=seed)]

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        raise ScoringUnsupportedError(
            f"{self.name} is an OpenAI-compatible endpoint: it cannot score() answers, because the "
            "chat-completions API returns no teacher-forced log-probabilities of a given answer. Evaluate it "
            "by generation (ROUGE, keyword leak rate), or load the model's weights locally for "
            "probability-based metrics (truth ratio, MIA).")


def _snippet(text: str, n: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[:n] + "…"


def _as_int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _event_text(data: str, chat: bool, url: str) -> str:
    """The text of one streamed event (``chat.completion.chunk`` or a completion chunk); "" for one without."""
    try:
        event = json.loads(data)
    except (json.JSONDecodeError, ValueError) as exc:
        raise MalformedResponseError(f"{url} streamed an event that is not JSON: {_snippet(data)!r}") from exc
    if not isinstance(event, dict):
        raise MalformedResponseError(f"{url} streamed an event that is not a JSON object: {_snippet(data)!r}")
    if event.get("error"):
        raise RemoteModelError(f"{url} reported an error mid-stream: {_snippet(json.dumps(event['error']))}")
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""  # a usage-only or keep-alive event
    piece = (choices[0].get("delta") or {}).get("content") if chat else choices[0].get("text")
    if piece is not None and not isinstance(piece, str):
        raise MalformedResponseError(f"{url} streamed a non-text piece: {_snippet(repr(piece))}")
    return piece or ""


def _completion_text(data, chat: bool, url: str) -> str:
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
    except (KeyError, IndexError, TypeError) as exc:
        error = data.get("error") if isinstance(data, dict) else None
        if error:
            raise RemoteModelError(f"{url} returned an error: {_snippet(json.dumps(error))}") from exc
        raise MalformedResponseError(
            f"{url} answered JSON without choices[0].{'message.content' if chat else 'text'} "
            f"(not an OpenAI-compatible API?): {_snippet(json.dumps(data, default=str))}") from exc
    if text is None:
        return ""
    if not isinstance(text, str):
        raise MalformedResponseError(f"{url} answered a non-text completion: {_snippet(repr(text))}")
    return text

"""Running the gateway: in the foreground (``unlearnkit serve``) or in a background
thread on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from unlearnkit.errors import ConfigError
from unlearnkit.models.base import LanguageModel
from unlearnkit.service.settings import ADMIN_TOKEN_ENV, DEFAULT_DB, ServeSettings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(settings: ServeSettings, model: LanguageModel | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM): one process, one model worker."""
    import uvicorn

    from unlearnkit.service.app import create_app

    app = create_app(settings, model)
    if not settings.admin_token:
        print(f"unlearnkit serve: {ADMIN_TOKEN_ENV} is not set: the admin routes are closed "
              "(the target list cannot be changed)", file=sys.stderr)
    if not _is_loopback(settings.host) and not settings.api_key:
        print(f"unlearnkit serve: listening on {settings.host} without an API key: anyone who can reach it "
              "can use the model (set UNLEARNKIT_API_KEY)", file=sys.stderr)
    print(f"unlearnkit serve: guard={settings.guard} model={settings.model or 'smollm2'} db={settings.db_label} "
          f"on http://{settings.host}:{settings.port}/v1", file=sys.stderr)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            workers=1, timeout_graceful_shutdown=30, server_header=False)
    uvicorn.Server(config).run()


def serve(model: str | None = None, guard: str = "prompt", host: str = "127.0.0.1", port: int = 8000,
          db: str | Path | None = None, options: dict[str, str] | None = None, api_key: str | None = None,
          max_tokens: int | None = None, max_request_bytes: int | None = None, prompt_filter: bool = True,
          log_level: str = "info", request_timeout_s: float | None = None, max_request_tokens: int | None = None,
          max_prompts_per_turn: int | None = None, verify_targets: bool = True, prefix_cache: bool = True) -> None:
    """What ``unlearnkit serve`` calls. The admin token comes from UNLEARNKIT_ADMIN_TOKEN
    (and the optional chat key from UNLEARNKIT_API_KEY unless ``api_key`` is given);
    ``db`` is a SQLite path or a ``postgresql://`` URL (replicas share one). Raises
    ``ConfigError`` on bad settings, and on a PostgreSQL registry that cannot be reached,
    before the model is loaded."""
    settings = ServeSettings.from_env(
        model=model, guard=guard, host=host, port=port, db_path=db if db else Path(DEFAULT_DB),
        guard_options=dict(options or {}), api_key=api_key, max_tokens_limit=max_tokens,
        max_request_bytes=max_request_bytes, prompt_filter=prompt_filter, log_level=log_level,
        request_timeout_s=request_timeout_s, max_request_tokens=max_request_tokens,
        max_prompts_per_turn=max_prompts_per_turn, verify_targets=verify_targets, prefix_cache=prefix_cache,
    )
    # Fail on an unavailable guard before loading the model.
    if settings.guard != "none":
        from unlearnkit.service.guard_stack import resolve_guard_class

        resolve_guard_class(settings.guard).from_strings(settings.guard_options)
    # Fail on an unreachable shared registry before loading the model (the app opens its own).
    if isinstance(settings.db_path, str):
        from unlearnkit.service.registry_base import open_registry

        open_registry(settings.db_path).close()
    run_server(settings)


class ServerHandle:
    """A server running in a background thread: ``url`` (e.g. http://127.0.0.1:53211),
    ``stop()``; unpacks as ``url, stop`` and works as a context manager."""

    def __init__(self, url: str, stop: Callable[[], None], app, server, thread):
        self.url, self.stop, self.app, self._server, self._thread = url, stop, app, server, thread

    @property
    def base_url(self) -> str:
        """The OpenAI client's base_url: ``url + "/v1"``."""
        return self.url + "/v1"

    def __iter__(self):
        return iter((self.url, self.stop))

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_background_server(settings: ServeSettings, model: LanguageModel | None = None, *, port: int = 0,
                            timeout: float = 120.0) -> ServerHandle:
    """Start the gateway in a daemon thread on ``settings.host`` (loopback only) and
    ``port`` (0, the default: a free port; ``settings.port`` is ignored); returns once
    it accepts requests."""
    import uvicorn

    from unlearnkit.service.app import create_app

    if not _is_loopback(settings.host):
        raise ConfigError(f"background servers bind loopback only, not '{settings.host}'")
    app = create_app(settings, model)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, int(port)))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10,
                            server_header=False)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def target():
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"unlearnkit-serve-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError(f"the gateway did not start: {errors[0] if errors else 'timed out'}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)
        try:
            sock.close()
        except OSError:
            pass

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return ServerHandle(f"http://{host}:{port}", stop, app, server, thread)

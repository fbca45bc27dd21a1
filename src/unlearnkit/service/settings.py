"""Settings of the gateway: one dataclass, filled from arguments and the environment.

Secrets come only from the environment (or explicit arguments): the admin token
from ``UNLEARNKIT_ADMIN_TOKEN`` and the optional chat key from ``UNLEARNKIT_API_KEY``.
There is no default token: without one the admin routes stay closed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.errors import ConfigError
from unlearnkit.service.registry_base import db_label, normalize_db

ADMIN_TOKEN_ENV = "UNLEARNKIT_ADMIN_TOKEN"
API_KEY_ENV = "UNLEARNKIT_API_KEY"
DEFAULT_DB = "unlearnkit-registry.db"
MIN_TOKEN_LENGTH = 16
MIN_DISTINCT_CHARS = 8  # "aaaaaaaaaaaaaaaa" is long enough and guessable

GUARD_ALIASES = {"prompt": "prompting", "off": "none", "bare": "none"}
"""Short names; every other guard is a method of the registry whose family is "guard" (``--guard NAME``)."""

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."


@dataclass
class ServeSettings:
    """Everything ``create_app`` and ``run_server`` need.

    ``model``: None (the embedded SmolLM2), ``"tiny"``, a local path, or an
    http(s) URL of an OpenAI-compatible upstream. ``guard``: eco | alu | prompt | none.
    ``db_path``: the target registry: a SQLite file (a path or ``sqlite:///path``), or a
    ``postgresql://`` URL that gateway replicas share.
    """

    model: str | None = None
    guard: str = "prompt"
    guard_options: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    db_path: Path | str = Path(DEFAULT_DB)
    admin_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    served_model_name: str | None = None  # the id in /v1/models; default: the upstream model's name
    # limits
    max_request_bytes: int = 1_000_000  # chat/completion bodies
    max_admin_request_bytes: int = 16_000_000  # admin bodies (forget data files)
    max_tokens_limit: int = 1024  # largest max_tokens a client may ask for
    default_max_tokens: int = 256
    max_context_tokens: int | None = None  # default: the model's own context length when known
    max_n: int = 4
    max_targets_per_request: int = 10_000
    # engine
    max_batch_size: int = 16
    # Under load, wait up to this long for a batch to reach the recent peak size: the
    # clients the previous batch answered come back within milliseconds, and one batch
    # of 16 costs far less than a batch of 2 followed by one of 14. A lone client never waits.
    batch_wait_ms: float = 50.0
    max_queue: int = 512  # queued requests beyond this get 429
    # Fairness: a request's prompts are answered at most this many per turn; the rest wait behind the requests
    # that arrived meanwhile, so one client's big batch cannot hold everyone else for its whole length.
    max_prompts_per_turn: int = 4
    max_request_tokens: int = 16_384  # prompts x max_tokens of one request (larger: 400)
    request_timeout_s: float = 300.0  # a request not answered by then gets a 504; its remaining work is dropped
    # reuse the keys and values of the start a prompt shares with the previous one (the guard's system prompt)
    prefix_cache: bool = True
    # enforcement
    prompt_filter: bool = True  # refuse without generating when a prompt names a target
    output_filter: bool = True  # refuse when an answer names a target or quotes a fact
    refusal: str = DEFAULT_REFUSAL
    # verification of each forget request (service/verification.py): a registered target is probed in the
    # background (low priority) with up to verify_probes questions of at most verify_max_tokens new tokens each
    verify_targets: bool = True
    verify_probes: int = 12
    verify_max_tokens: int = 48
    log_level: str = "info"

    def __post_init__(self):
        self.db_path = normalize_db(self.db_path)
        key = str(self.guard).lower().strip().replace("-", "_")
        self.guard = GUARD_ALIASES.get(key, key)
        if self.guard != "none":
            from unlearnkit.service.guard_stack import resolve_guard_class

            resolve_guard_class(self.guard)  # any guard method of the registry; else a clear error now
        for name in ("admin_token", "api_key"):
            value = getattr(self, name)
            if value is not None:
                value = value.strip()
                if not value:
                    value = None
                elif len(value) < MIN_TOKEN_LENGTH:
                    env = ADMIN_TOKEN_ENV if name == "admin_token" else API_KEY_ENV
                    raise ConfigError(f"{env} is too short ({len(value)} characters): use at least "
                                      f"{MIN_TOKEN_LENGTH}, e.g. the output of 'openssl rand -hex 32'")
                elif len(set(value)) < MIN_DISTINCT_CHARS:
                    env = ADMIN_TOKEN_ENV if name == "admin_token" else API_KEY_ENV
                    raise ConfigError(f"{env} is too weak ({len(set(value))} distinct characters): use a random "
                                      "secret, e.g. the output of 'openssl rand -hex 32'")
                setattr(self, name, value)
        if self.admin_token and self.api_key and self.admin_token == self.api_key:
            raise ConfigError(f"{ADMIN_TOKEN_ENV} and {API_KEY_ENV} must differ: a chat client must not be able "
                              "to change the target registry")
        for name in ("max_request_bytes", "max_admin_request_bytes", "max_tokens_limit", "default_max_tokens",
                     "max_n", "max_batch_size", "max_queue", "max_targets_per_request", "max_prompts_per_turn",
                     "max_request_tokens", "verify_probes", "verify_max_tokens"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"serve setting '{name}' must be at least 1")
        if not float(self.request_timeout_s) > 0:
            raise ConfigError(f"serve setting 'request_timeout_s' must be > 0 (got {self.request_timeout_s})")
        if self.default_max_tokens > self.max_tokens_limit:
            self.default_max_tokens = self.max_tokens_limit
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError(f"port {self.port} is out of range (0-65535)")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> ServeSettings:
        """Settings from keyword arguments, with the secrets read from the environment
        unless given explicitly. ``None`` values in ``overrides`` mean "use the default"."""
        env = os.environ if env is None else env
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown serve settings {sorted(unknown)}")
        values.setdefault("admin_token", env.get(ADMIN_TOKEN_ENV))
        values.setdefault("api_key", env.get(API_KEY_ENV))
        return cls(**values)

    @property
    def db_label(self) -> str:
        """The registry for messages and logs (a URL's password masked)."""
        return db_label(self.db_path)

    @property
    def admin_enabled(self) -> bool:
        return bool(self.admin_token)

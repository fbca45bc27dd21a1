"""The target registry in PostgreSQL, shared by gateway replicas (``--db postgresql://…``).

Same interface and the same tables as the SQLite registry (``registry.py``):

* One transaction per change: the target rows, the version and the audit entries
  commit together or not at all. Every write first takes one transaction-level
  advisory lock, so changes and audit entries commit in id order (``?after=ID``
  paging never skips a row that commits late).
* A change sends ``NOTIFY unlearnkit_registry, '<version>'`` in its transaction
  (delivered on commit). Each registry keeps a listening connection: the version
  it reports moves within milliseconds of a change made through any replica.
  The listener also reads the version every ``heartbeat_s`` (a safety net for a
  lost notification, and a liveness check).
* Fail closed: ``version()`` answers from the listener only while it heard from
  the server within ``max_staleness_s``; otherwise it asks the server directly, and
  if that fails it raises ``RegistryUnavailable`` (the gateway answers 503). Lost
  connections are re-opened on the next call; the listener reconnects by itself.
* Tables that vanish under a running registry (the database dropped, reset or restored
  without them) are not re-created: an empty list would serve every target again. The
  registry raises ``RegistryUnavailable`` saying so until they are back; the tables are
  created only when a registry opens the database.
* The ``audit`` table is append-only: a trigger raises on UPDATE, DELETE and
  TRUNCATE.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from unlearnkit.errors import ConfigError
from unlearnkit.service.registry_base import RegistryUnavailable, mask_url
from unlearnkit.service.registry_sql import READ_VERSION, SqlRegistry, read_version

log = logging.getLogger("unlearnkit.service")

CHANNEL = "unlearnkit_registry"
WRITE_LOCK = 0x756E6C6B  # pg_advisory_xact_lock key: one writer at a time ("unlk")
SCHEMA_LOCK = 0x756E6C6C  # held while creating the schema (replicas may start together)
LISTEN_SLICE_S = 0.1
URL_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"

SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    version BIGINT,
    request_id TEXT,
    prompt_sha256 TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action);
CREATE OR REPLACE FUNCTION unlearnkit_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_append_only'
                   AND tgrelid = 'audit'::regclass) THEN
        CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
            FOR EACH STATEMENT EXECUTE FUNCTION unlearnkit_audit_append_only();
    END IF;
END $$;
INSERT INTO meta(key, value) VALUES ('version', '0') ON CONFLICT (key) DO NOTHING;
INSERT INTO meta(key, value) VALUES ('schema', '1') ON CONFLICT (key) DO NOTHING;
"""


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - a dependency of unlearnkit
        raise ConfigError("a postgresql:// registry needs psycopg 3: pip install 'psycopg[binary]'") from exc
    return psycopg


def _first_line(exc: BaseException, secret: str | None) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return text.replace(secret, "***") if secret else text


class PostgresTargetRegistry(SqlRegistry):
    """Thread-safe: one connection for reads and writes (under a lock) and one listening
    connection in a daemon thread. Raises ``ConfigError`` naming the URL (password
    masked) when the server cannot be reached at start. The reads and changes themselves
    are ``SqlRegistry``'s (``registry_sql.py``)."""

    MARK = "%s"

    def __init__(self, url: str, *, connect_timeout: float = 5.0, heartbeat_s: float = 0.2,
                 max_staleness_s: float = 1.0, listen: bool = True):
        self._pg = _psycopg()
        from psycopg.conninfo import conninfo_to_dict

        self.url = url
        self.label = mask_url(url)
        try:
            self._secret = conninfo_to_dict(url).get("password") or None
        except self._pg.ProgrammingError as exc:
            raise ConfigError(f"--db '{self.label}' is not a valid PostgreSQL URL ({_first_line(exc, None)}): "
                              f"write {URL_FORM}") from None
        self.connect_timeout = max(2, int(round(connect_timeout)))  # libpq's minimum is 2 s
        self.heartbeat_s = float(heartbeat_s)
        self.max_staleness_s = float(max_staleness_s)
        self._lock = threading.RLock()
        self._conn = None
        self._closing = threading.Event()
        self._state = threading.Lock()
        self._version = 0
        self._heard_at = float("-inf")  # monotonic time the listener last heard from the server
        self._listen_error: str | None = "not started"
        self._listening = threading.Event()
        try:
            self._conn = self._connect()
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                self._conn.execute(SCHEMA)
            self._saw(read_version(self._conn))
        except self._pg.Error as exc:
            self.close()
            raise ConfigError(
                f"cannot use the PostgreSQL target registry at {self.label} ({_first_line(exc, self._secret)}): "
                f"check that the server runs and accepts connections there, that the user and password are "
                f"right and that the database exists (createdb NAME), or give a SQLite file with --db; "
                f"the URL's form is {URL_FORM}") from None
        self._listener: threading.Thread | None = None
        if listen:
            self._listener = threading.Thread(target=self._listen_loop, name="unlearnkit-registry-listen",
                                              daemon=True)
            self._listener.start()
            self._listening.wait(self.connect_timeout + 1.0)

    # -- connections -------------------------------------------------------------------
    def _connect(self):
        from psycopg.rows import dict_row

        return self._pg.connect(self.url, autocommit=True, row_factory=dict_row,
                                connect_timeout=self.connect_timeout, application_name="unlearnkit-gateway",
                                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2)

    def _connection(self):
        if self._closing.is_set():
            raise RegistryUnavailable(f"the target registry at {self.label} is closed")
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            try:
                self._conn = self._connect()
            except self._pg.Error as exc:
                raise self._unavailable(exc) from None
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _unavailable(self, exc: BaseException) -> RegistryUnavailable:
        return RegistryUnavailable(f"the target registry at {self.label} is unreachable "
                                   f"({_first_line(exc, self._secret)})")

    def _schema_gone(self, exc: BaseException) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"the target registry at {self.label} has lost its tables ({_first_line(exc, self._secret)}): "
            "the database was dropped, reset or restored without them, so the target list cannot be confirmed "
            "and nothing is served; restore the database, or restart the gateway to start over with an empty "
            "target list")

    def _lost(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is gone (then it is dropped)."""
        if isinstance(exc, (self._pg.OperationalError, self._pg.InterfaceError)) or (
                self._conn is not None and (self._conn.closed or self._conn.broken)):
            self._drop()
            return True
        return False

    def _read(self, fn):
        """Run ``fn(conn)`` on the shared connection; a lost connection is re-opened once."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except self._pg.errors.UndefinedTable as exc:
                    raise self._schema_gone(exc) from None
                except self._pg.Error as exc:
                    if not self._lost(exc):
                        raise
                    if attempt:
                        raise self._unavailable(exc) from None

    @contextmanager
    def _write(self):
        """One write transaction under the registry-wide write lock. A connection lost
        here is not retried (the change may or may not have committed): the caller
        gets ``RegistryUnavailable`` and can list the targets to check."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    yield conn
            except self._pg.errors.UndefinedTable as exc:
                raise self._schema_gone(exc) from None
            except self._pg.Error as exc:
                if self._lost(exc):
                    raise self._unavailable(exc) from None
                raise

    @contextmanager
    def _consistent_read(self, conn):
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn

    def _store_version(self, conn, version: int) -> None:
        """Store the new version and announce it (NOTIFY is delivered when the transaction commits)."""
        super()._store_version(conn, version)
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))

    # -- the listener --------------------------------------------------------------------
    def _saw(self, version: int) -> None:
        with self._state:
            self._version = max(self._version, int(version))

    def _heard(self, version: int | None = None) -> None:
        with self._state:
            if version is not None:
                self._version = max(self._version, int(version))
            self._heard_at = time.monotonic()
            self._listen_error = None

    def _listen_loop(self) -> None:
        backoff = 0.1
        while not self._closing.is_set():
            conn = None
            try:
                conn = self._pg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout,
                                        application_name="unlearnkit-gateway-listen", keepalives=1,
                                        keepalives_idle=5, keepalives_interval=2, keepalives_count=2)
                conn.execute(f"LISTEN {CHANNEL}")
                self._heard(int(conn.execute(READ_VERSION).fetchone()[0]))
                self._listening.set()
                backoff = 0.1
                beat = time.monotonic()
                while not self._closing.is_set():
                    # short waits, so close() is never kept waiting for a whole heartbeat
                    for note in conn.notifies(timeout=min(self.heartbeat_s, LISTEN_SLICE_S)):
                        self._heard(int(note.payload) if note.payload.isdigit() else None)
                    if time.monotonic() - beat >= self.heartbeat_s:
                        self._heard(int(conn.execute(READ_VERSION).fetchone()[0]))
                        beat = time.monotonic()
            except Exception as exc:
                if self._closing.is_set():
                    break
                gone = isinstance(exc, self._pg.errors.UndefinedTable)
                with self._state:
                    first = self._listen_error is None
                    self._listen_error = str(self._schema_gone(exc)) if gone else _first_line(exc, self._secret)
                    self._heard_at = float("-inf")
                if first and gone:
                    log.error("%s; retrying", self._listen_error)
                elif first:
                    log.warning("lost the target registry at %s (%s); reconnecting", self.label, self._listen_error)
                self._listening.set()
                self._closing.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self._closing.set()
        listener = getattr(self, "_listener", None)
        if listener is not None and listener is not threading.current_thread():
            listener.join(LISTEN_SLICE_S + self.connect_timeout + 1.0)
        with self._lock:
            self._drop()

    def __enter__(self) -> PostgresTargetRegistry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------
    def version(self) -> int:
        """The current version: the listener's, while it heard from the server within
        ``max_staleness_s``; else read from the server (``RegistryUnavailable`` if it cannot be)."""
        with self._state:
            if time.monotonic() - self._heard_at <= self.max_staleness_s:
                return self._version
        version = self._read(read_version)
        self._saw(version)
        with self._state:
            return max(version, self._version)

    @property
    def listening(self) -> bool:
        """Whether the listener is connected (changes arrive by notification)."""
        with self._state:
            return self._listen_error is None and self._listener is not None

"""A throw-away PostgreSQL server on loopback, for tests and benchmarks.

``TempPostgres`` runs ``initdb`` and ``pg_ctl`` from the installed PostgreSQL
(Debian's ``postgresql`` package: ``/usr/lib/postgresql/<version>/bin``) in a
temporary directory, listening on 127.0.0.1 only, with ``trust`` authentication
for loopback (never expose it). PostgreSQL refuses to run as root, so as root the
server runs as the ``postgres`` user (or ``nobody``) in a directory it owns.

    with TempPostgres() as pg:
        url = pg.create_database("registry")   # postgresql://postgres@127.0.0.1:PORT/registry
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN_ENV = "UNLEARNKIT_PG_BIN"
SERVER_USERS = ("postgres", "nobody")
SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: $UNLEARNKIT_PG_BIN, pg_ctl on
    PATH (links followed), or the newest /usr/lib/postgresql/*/bin; None when absent."""
    candidates: list[Path] = []
    if os.environ.get(BIN_ENV):
        candidates.append(Path(os.environ[BIN_ENV]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)

    def version(p: str) -> tuple:
        return tuple(int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split("."))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for d in candidates:
        if all((d / exe).is_file() and os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def missing_reason() -> str | None:
    """Why no temporary server can be started here (None when one can)."""
    if find_bin_dir() is None:
        return ("PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found: install them "
                f"(Debian: apt-get install postgresql) or set {BIN_ENV} to their directory")
    if os.geteuid() == 0 and _server_user() is None:
        return f"running as root and none of the users {SERVER_USERS} exists to run PostgreSQL as"
    return None


def _server_user() -> pwd.struct_passwd | None:
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TempPostgres:
    """One PostgreSQL cluster in a temporary directory; ``start()``, ``stop()``, ``restart()``,
    ``create_database(name)``; removed on ``close()`` (also a context manager)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.bin = find_bin_dir()
        if self.bin is None:
            raise RuntimeError(missing_reason())
        self.host, self.port = host, port or free_port(host)
        self.user = _server_user() if os.geteuid() == 0 else None
        if os.geteuid() == 0 and self.user is None:
            raise RuntimeError(missing_reason())
        # Its own directory under the system temp dir, so the server's user can reach it
        # (a pytest tmp_path, or root's $TMPDIR, may sit under a directory only root can enter).
        base = "/tmp" if self.user is not None and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="unlearnkit-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)
        self._initdb()

    # -- running the binaries as the server's user ---------------------------------------
    def _run(self, args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
        kw = {}
        if self.user is not None:
            kw = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        env = dict(os.environ, LC_ALL="C", LANG="C", PGTZ="UTC")
        env.pop("PGDATA", None)
        proc = subprocess.run(args, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout, **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        try:
            return "\nserver log:\n" + self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _initdb(self) -> None:
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                   "--encoding=UTF8", "--no-sync", "--no-instructions"])

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{name}"

    def start(self, timeout: float = 60.0) -> TempPostgres:
        # fsync=off and full_page_writes=off only matter when the machine itself crashes (the
        # cluster is thrown away then). synchronous_commit stays on: with it off, a commit is
        # acknowledged before its WAL leaves the server's memory, so stop("immediate") (a
        # crash) would lose the last ~0.6 s of acknowledged commits, even a registry's tables.
        opts = (f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c fsync=off "
                "-c full_page_writes=off -c max_connections=200")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                   "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: like a crash; ``fast``: disconnect everyone, shut down)."""
        if (self.data / "postmaster.pid").exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, _) and return its URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name '{name}': use letters, digits and _ only")
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


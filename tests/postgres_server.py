"""A throw-away PostgreSQL server on 127.0.0.1 for tests that run the store on PostgreSQL.

It uses Debian's packaged binaries (``apt-get install postgresql``: ``initdb`` and ``pg_ctl``
in ``/usr/lib/postgresql/<version>/bin``, the newest version found), never the system cluster.
Every server gets its own data directory, a TCP listener on a free loopback port, a Unix socket
in its own directory, trust authentication for loopback and the socket only, and no fsync (its
data is thrown away anyway).  Run as root, the server runs as the ``postgres`` user, as
PostgreSQL insists; its files then live in a directory of their own that it owns, because
pytest's temporary directories are private to root.

Usage (``tests/conftest.py`` has a session-wide ``postgres`` fixture and a ``database_url``
fixture parametrised over SQLite and PostgreSQL)::

    with PostgresServer(tmp_path) as server:
        url = server.url                        # postgresql+psycopg://postgres@127.0.0.1:P/supportbot
        other = server.new_database("t_1")      # a fresh, empty database; its URL
        server.drop_database("t_1")

Environment:
    SUPPORTBOT_TEST_POSTGRES_BIN      folder holding initdb and pg_ctl (default: the newest
                                      /usr/lib/postgresql/*/bin).
    SUPPORTBOT_TEST_REQUIRE_POSTGRES  "1": missing binaries are an error, not a skip (CI).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg

REQUIRE_POSTGRES_ENV = "SUPPORTBOT_TEST_REQUIRE_POSTGRES"
POSTGRES_BIN_ENV = "SUPPORTBOT_TEST_POSTGRES_BIN"
HOST = "127.0.0.1"
SUPERUSER = "postgres"
DEFAULT_DATABASE = "supportbot"
# Not UTC on purpose: PostgreSQL returns timestamptz values in the session's zone, and the
# store must hand back the same UTC times as it does on SQLite whatever the server's zone is.
SERVER_TIMEZONE = "Asia/Kolkata"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Servers still running when the interpreter exits are stopped, so a crashed test run does not
# leave a postmaster behind.
_RUNNING: weakref.WeakSet[PostgresServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop()


class PostgresError(RuntimeError):
    """The server could not be set up, started or stopped (carries the log tail)."""


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); a folder name that is not a number sorts first.
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (-1,)


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    override = os.environ.get(POSTGRES_BIN_ENV)
    candidates = (
        [Path(override)]
        if override
        else sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _run_as_postgres() -> bool:
    # PostgreSQL refuses to run as root.
    return os.geteuid() == 0


def postgres_skip_reason() -> str | None:
    """None when a server can be started; otherwise why not, for ``pytest.skip``.

    Raises PostgresError instead when ``SUPPORTBOT_TEST_REQUIRE_POSTGRES=1`` (CI must not skip).
    """
    reason: str | None = None
    if postgres_bin_dir() is None:
        where = os.environ.get(POSTGRES_BIN_ENV) or "/usr/lib/postgresql/*/bin"
        reason = (
            f"PostgreSQL is not installed (no initdb/pg_ctl in {where}; "
            f"apt-get install postgresql, or set {POSTGRES_BIN_ENV})"
        )
    elif _run_as_postgres():
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            reason = f"running as root and there is no {SUPERUSER!r} user to run PostgreSQL as"
    if reason and os.environ.get(REQUIRE_POSTGRES_ENV, "") not in ("", "0"):
        raise PostgresError(f"{reason}; {REQUIRE_POSTGRES_ENV} is set")
    return reason


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL server for the lifetime of the ``with`` block (or start() ... stop())."""

    def __init__(self, tmpdir: Path, *, database: str = DEFAULT_DATABASE) -> None:
        bindir = postgres_bin_dir()
        if bindir is None:
            raise PostgresError("PostgreSQL is not installed (see postgres_skip_reason())")
        self.bindir = bindir
        self.tmpdir = Path(tmpdir)
        self.database = database
        self.port = 0
        self.base: Path | None = None
        self._started = False

    # --- paths and URLs ------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "run"

    @property
    def log_file(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "server.log"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the server's own database (``supportbot``)."""
        return self.url_for(self.database)

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            return
        if _run_as_postgres():
            # pytest's tmpdir is private to root: the server gets its own folder, owned by it.
            self.base = Path(tempfile.mkdtemp(prefix="supportbot-pg-"))
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.base, user.pw_uid, user.pw_gid)
        else:
            self.base = Path(tempfile.mkdtemp(prefix="pg-", dir=self.tmpdir))
        self._as_server_user(["mkdir", "-m", "700", str(self.socket_dir)])
        self._as_server_user(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                # Trust only the local socket and loopback addresses (initdb's host lines
                # are 127.0.0.1/32 and ::1/128); the server listens on nothing else.
                "--auth-local=trust",
                "--auth-host=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        settings = {
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "timezone": f"'{SERVER_TIMEZONE}'",
            # Throw-away data: durability costs time and buys nothing here.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        # Appending keeps the file's owner, also when root does it.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        _RUNNING.add(self)
        self._started = True
        # The free port can be taken between the probe and the bind: try a few.
        for attempt in range(3):
            self.port = free_port()
            started = self._as_server_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "--pgdata",
                    str(self.data_dir),
                    "--log",
                    str(self.log_file),
                    "--wait",
                    "--timeout=60",
                    "--options",
                    f"-p {self.port}",
                ],
                check=False,
            )
            if started.returncode == 0:
                break
            log = self._log_tail()
            if attempt == 2 or "could not bind" not in log:
                self.stop()
                raise PostgresError(f"PostgreSQL did not start:\n{started.stderr}\n{log}")
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        _RUNNING.discard(self)
        if self.base is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            # Immediate: nothing in it is worth a clean shutdown.
            self._as_server_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "--pgdata",
                    str(self.data_dir),
                    "-m",
                    "immediate",
                ],
                check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)

    # --- databases -----------------------------------------------------------------------------
    def new_database(self, name: str) -> str:
        """Create an empty database (lower-case letters, digits, ``_``); return its URL."""
        self._check_name(name)
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop it, closing any connection a test left open."""
        self._check_name(name)
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")

    @contextlib.contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[Any]]:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(
            host=HOST, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            yield conn

    # --- helpers -------------------------------------------------------------------------------
    def _as_server_user(
        self, argv: list[str], stdin: str | None = None, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if _run_as_postgres():
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C"},
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise PostgresError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

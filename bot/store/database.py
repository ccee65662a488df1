"""Engine/session setup and the schema's revision (Alembic migrations).

The queries live beside it, one module per concern (``corpus_store``, ``embedding_cache``, ...),
each taking a :class:`Database`.

Backends: SQLite (the default, a file in the data dir) and PostgreSQL through psycopg 3
(``psycopg[binary]``): ``postgresql://`` and ``postgres://`` URLs are read as
``postgresql+psycopg://``. The schema is managed by the migrations in ``bot/store/migrations``;
see :meth:`Database.create_schema` and :meth:`Database.upgrade`.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ConfigError, SchemaOutdatedError, TransientError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Key of the PostgreSQL advisory lock held while migrating: workers that start together on an
# empty database must not both create the tables. Any constant works; this one spells
# "supportb" so it will not clash with another application's key by accident.
_MIGRATION_LOCK_KEY = 0x73757070_6F727462

# The tables that Base.metadata.create_all made before migrations existed (revision 0001), and
# what the last create_all-era version added on top (then the whole of revision 0002). Used
# only to place a database that has no alembic_version table.
_TABLES_0001 = frozenset(
    {
        "documents",
        "chunks",
        "embedding_cache",
        "room_events",
        "sync_state",
        "questions",
        "replies",
        "past_answers",
    }
)
_TABLES_0002 = frozenset(
    {
        "dashboard_posts",
        "suggestion_votes",
        "users",
        "web_sessions",
        "login_throttle",
        "local_room_events",
    }
)
UPGRADE_COMMAND = "supportbot db upgrade"


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    # busy_timeout rides out short locks. WAL lets the dashboard read while a build writes.
    cur.execute("PRAGMA busy_timeout=10000")
    # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once,
    # without the busy wait, while a connection opened at the same moment (another worker
    # starting) holds a lock: wait for that here.
    deadline = time.monotonic() + 10
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def normalise_url(url: str | URL) -> URL:
    """The URL with PostgreSQL pointed at psycopg 3, the driver this project installs.

    SQLAlchemy reads a bare ``postgresql://`` as psycopg2 (not installed) and no longer knows
    ``postgres://`` (what Heroku-style providers hand out); both become ``postgresql+psycopg``.
    An explicit driver (``postgresql+psycopg2://``) is left alone.
    """
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver in ("", "psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "postgres":
        parsed = parsed.set(drivername=f"postgresql+{driver}")
    return parsed


def _one_line(exc: object) -> str:
    # psycopg's connection errors span several lines; the CLI prints errors as one.
    return " ".join(str(exc).split())


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for our migrations, without an alembic.ini; ``connection`` is
    the one ``env.py`` migrates (the caller owns its transaction)."""
    config = Config()
    # ConfigParser interpolates "%": a path containing one must not be read as a reference.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this version of the code needs (the newest migration)."""
    head = _scripts().get_current_head()
    assert head is not None, "bot/store/migrations/versions has no revisions"
    return head


def _placed(conn: Connection) -> tuple[str | None, bool]:
    """(revision, versioned): where this database stands; revision None = no tables of ours.

    A database without an ``alembic_version`` table but with our tables was made by the old
    ``create_all``: it counts as 0001, or as 0002 when it already has that revision's tables
    and columns (made by the last create_all-era version).
    """
    current = MigrationContext.configure(conn).get_current_revision()
    if current is not None:
        return current, True
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    if not tables & _TABLES_0001:
        return None, False
    if tables >= _TABLES_0002 and "claimed_by" in {
        c["name"] for c in inspector.get_columns("room_events")
    }:
        return "0002", False
    return "0001", False


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:  # alembic's answer for a revision it has no file for
        return False


def outdated_message(current: str, head: str) -> str:
    """The one line that refuses a database whose schema is not ``head``."""
    if not _known(current):
        return (
            f"the database schema is at revision {current}, which this version does not know "
            f"(it needs {head}): it was upgraded by a newer supportbot; run that version"
        )
    return (
        f"the database schema is at revision {current}, this version needs {head}: "
        f'run "{UPGRADE_COMMAND}"'
    )


class Database:
    """Owns the engine; hands out short-lived sessions; keeps the schema at its revision."""

    def __init__(self, url: str | URL) -> None:
        try:
            parsed = normalise_url(url)
        except ArgumentError:
            raise ConfigError(
                "the database URL is not a SQLAlchemy URL "
                "(sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
            ) from None
        self.url = parsed
        self.backend = parsed.get_backend_name()
        options: dict[str, Any] = {}
        if self.backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if self.backend == "postgresql":
            # A server restart or a firewall dropping idle connections must cost a reconnect,
            # not an error on the next query.
            options["pool_pre_ping"] = True
            if "connect_timeout" not in parsed.query:
                options["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = create_engine(parsed, **options)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(
                f"no database driver for {parsed.drivername!r} URLs: {_one_line(exc)}"
            ) from None
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # --- schema --------------------------------------------------------------------------------
    def head_revision(self) -> str:
        return head_revision()

    def schema_revision(self) -> str | None:
        """The database's revision (see :func:`_placed`); None for an empty database."""
        with self._connected() as conn:
            return _placed(conn)[0]

    def create_schema(self) -> None:
        """Ensure the schema: migrate an empty database to head, accept one at head, refuse
        an older one with :class:`SchemaOutdatedError` (``supportbot db upgrade`` migrates it).

        Safe when several processes start at once: the lock-free look is confirmed under the
        migration lock before anything is written.
        """
        head = head_revision()
        with self._connected() as conn:
            current, versioned = _placed(conn)
        if current == head and versioned:
            return
        if current is not None and current != head:
            raise SchemaOutdatedError(outdated_message(current, head))
        with self._migration_lock() as conn:
            current, versioned = _placed(conn)
            if current is None:
                command.upgrade(alembic_config(conn), "head")
            elif current != head:
                raise SchemaOutdatedError(outdated_message(current, head))
            elif not versioned:
                # At head but made by create_all: record it, so later revisions apply.
                command.stamp(alembic_config(conn), head)

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate to head; returns (revision before, revision now). A no-op at head."""
        head = head_revision()
        with self._migration_lock() as conn:
            before, versioned = _placed(conn)
            if before is not None and not _known(before):
                raise SchemaOutdatedError(outdated_message(before, head))
            if before == head and versioned:
                return before, head
            config = alembic_config(conn)
            if before is not None and not versioned and before != "0001":
                command.stamp(config, before)
            # An unversioned 0001-era database runs 0001 itself, which creates only the
            # tables it lacks: the same as stamping 0001, plus what older versions never made.
            command.upgrade(config, "head")
            return before, head

    @contextmanager
    def _connected(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise TransientError(f"database error: {_one_line(exc.orig)}") from exc

    @contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        """One transaction that only one process at a time holds, for migrating."""
        with self._connected() as conn:
            if self.backend == "postgresql":
                # Released with the transaction, also when the process dies.
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            elif self.backend == "sqlite":
                # Take the write lock up front (others wait for it up to busy_timeout), and make
                # the DDL part of this transaction: the driver would otherwise run it outside one.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            # OperationalError: locked database, lost or refused connection, serialization
            # failure, deadlock (psycopg's and sqlite3's alike). A connection that SQLAlchemy
            # found dead (possibly surfacing as psycopg's InterfaceError) is also worth a retry.
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise TransientError(f"database error: {_one_line(exc.orig)}") from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()

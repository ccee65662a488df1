"""The schema's migrations on SQLite and PostgreSQL: empty → head, databases made before
migrations existed, refusing an outdated schema, concurrent upgrades, ``supportbot db``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, select, text

from bot.cli import main as cli
from bot.errors import ConfigError, SchemaOutdatedError, TransientError
from bot.store.database import Database, alembic_config, normalise_url
from bot.store.models import Base, PastAnswerRow, QuestionRow, RoomEventRow, SyncStateRow
from tests.fixtures import models_0001
from tests.postgres_server import PostgresServer, free_port

REPO = Path(__file__).resolve().parents[2]
HEAD = "0005"
OUTDATED = (
    'the database schema is at revision 0001, this version needs 0005: run "supportbot db upgrade"'
)


def differences(db: Database, metadata: MetaData = Base.metadata) -> list[Any]:
    """What alembic's autogenerate would change to make the database match ``metadata``."""
    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def stored_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def make_0001_era(url: str, *, tables: list[str] | None = None) -> Database:
    """A database as the old ``create_all`` left it (no alembic_version), with some rows."""
    db = Database(url)
    old = models_0001.Base.metadata
    old.create_all(db.engine, tables=[old.tables[t] for t in tables] if tables else None)
    if tables is None:
        with db.session() as s:
            s.add(
                models_0001.RoomEventRow(
                    event_id="$q",
                    room_id="!r:x",
                    sender="@a:x",
                    origin_ts=1,
                    event_type="m.room.message",
                    body="how?",
                )
            )
            s.flush()
            s.add(models_0001.QuestionRow(event_id="$q", room_id="!r:x", asker="@a:x", text="how?"))
            s.add(
                models_0001.PastAnswerRow(
                    key="k", question="q", answer="a", url="u", source="room", established_by="x"
                )
            )
    return db


# --- the schema equals the models -----------------------------------------------------------------
def test_empty_database_migrates_to_head(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert db.head_revision() == HEAD
        assert db.schema_revision() is None
        db.create_schema()
        assert db.schema_revision() == HEAD
        assert stored_revision(db) == HEAD
        # The guard against models and migrations drifting apart: nothing to autogenerate.
        assert differences(db) == []
    finally:
        db.close()


def test_the_comparison_would_see_a_drift(database_url: str) -> None:
    """``differences`` is not vacuous: a column the migrations lack shows up."""
    db = Database(database_url)
    try:
        db.create_schema()
        drifted = MetaData()
        for table in Base.metadata.sorted_tables:
            table.to_metadata(drifted)
        drifted.tables["users"].append_column(Column("shoe_size", Integer, nullable=True))
        found = differences(db, drifted)
        assert [(d[0], d[3].name) for d in found] == [("add_column", "shoe_size")]
    finally:
        db.close()


def test_revision_0001_is_the_old_create_all(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
        assert stored_revision(db) == "0001"
        assert differences(db, models_0001.Base.metadata) == []
        with db.engine.begin() as conn:  # and back: 0002's downgrade undoes it exactly
            command.upgrade(alembic_config(conn), "head")
            command.downgrade(alembic_config(conn), "0001")
        assert differences(db, models_0001.Base.metadata) == []
    finally:
        db.close()


def test_downgrade_keeps_rows_in_the_older_tables(database_url: str) -> None:
    """0002's downgrade drops columns in place: no table copy, so no cascade into questions."""
    db = make_0001_era(database_url)
    try:
        db.upgrade()
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        with db.session() as s:
            assert s.scalars(select(models_0001.QuestionRow.event_id)).all() == ["$q"]
    finally:
        db.close()


def test_going_back_before_reviews_drops_the_unreviewed_pairs(database_url: str) -> None:
    """0003's downgrade: a pending pair must not turn searchable in the older version."""
    db = Database(database_url)
    try:
        db.create_schema()
        with db.session() as s:
            for key, review in (("kept", "approved"), ("waiting", "pending"), ("no", "rejected")):
                s.add(
                    PastAnswerRow(
                        key=key,
                        question="q",
                        answer="a",
                        url="u",
                        source="room",
                        established_by="x",
                        review=review,
                    )
                )
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT key FROM past_answers")).scalars().all() == ["kept"]
    finally:
        db.close()


# --- databases made before migrations ------------------------------------------------------------
def test_unversioned_0001_database_is_refused_then_upgraded_with_its_data(
    database_url: str,
) -> None:
    db = make_0001_era(database_url)
    try:
        assert db.schema_revision() == "0001"
        with pytest.raises(SchemaOutdatedError) as refused:
            db.create_schema()
        assert str(refused.value) == OUTDATED
        assert "alembic_version" not in inspect(db.engine).get_table_names()  # nothing written

        assert db.upgrade() == ("0001", HEAD)
        assert db.schema_revision() == HEAD == stored_revision(db)
        assert differences(db) == []
        db.create_schema()  # now accepted
        with db.session() as s:
            question = s.get(QuestionRow, "$q")
            assert question is not None and question.text == "how?"
            assert question.answered_by is None and question.handled_by is None
            event = s.get(RoomEventRow, "$q")
            assert event is not None and event.claimed_by is None
            assert s.scalars(select(PastAnswerRow.key)).all() == ["k"]
            # Pairs from before reviews existed stay searchable.
            assert s.scalars(select(PastAnswerRow.review)).all() == ["approved"]
    finally:
        db.close()


def test_an_older_partial_database_gets_the_missing_tables(database_url: str) -> None:
    """Versions before the room client made only the corpus tables; create_all added the rest
    on the next start, and so does the upgrade."""
    db = make_0001_era(database_url, tables=["documents", "chunks", "embedding_cache"])
    try:
        assert db.schema_revision() == "0001"
        assert db.upgrade() == ("0001", HEAD)
        assert differences(db) == []
    finally:
        db.close()


def test_an_unversioned_database_at_0002_is_stamped_and_upgraded(database_url: str) -> None:
    """The last create_all-era version made revision 0002's tables already: it is stamped
    there and migrated on from it."""
    db = Database(database_url)
    try:
        Base.metadata.create_all(db.engine)
        with db.engine.begin() as conn:  # what 0003 to 0005 added, which it did not have
            conn.execute(text("DROP TABLE digests"))
            conn.execute(text("DROP INDEX ix_past_answers_review"))
            conn.execute(text("DROP INDEX ix_room_events_room_sender_ts"))
            for column in ("review", "reviewed_by", "reviewed_at"):
                conn.execute(text(f"ALTER TABLE past_answers DROP COLUMN {column}"))
        assert db.schema_revision() == "0002"
        assert stored_revision(db) is None
        assert db.upgrade() == ("0002", HEAD)
        assert stored_revision(db) == HEAD
        assert differences(db) == []
    finally:
        db.close()


def test_head_is_a_no_op(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert db.upgrade() == (None, HEAD)
        with db.session() as s:
            s.add(SyncStateRow(key="k", value="v"))
        assert db.upgrade() == (HEAD, HEAD)
        db.create_schema()
        db.create_schema()
        assert stored_revision(db) == HEAD
        with db.session() as s:
            assert s.scalars(select(SyncStateRow.value)).all() == ["v"]
    finally:
        db.close()


def test_a_newer_schema_is_refused(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.create_schema()
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        message = (
            "the database schema is at revision 0099, which this version does not know "
            "(it needs 0005): it was upgraded by a newer supportbot; run that version"
        )
        with pytest.raises(SchemaOutdatedError) as refused:
            db.create_schema()
        assert str(refused.value) == message
        with pytest.raises(SchemaOutdatedError, match="does not know"):
            db.upgrade()
    finally:
        db.close()


# --- several processes at once --------------------------------------------------------------------
@pytest.mark.parametrize("how", ["upgrade", "create_schema"])
def test_concurrent_migrations_both_succeed(database_url: str, how: str) -> None:
    """Workers starting together on an empty database: one migrates, the others wait for it
    (PostgreSQL: advisory lock; SQLite: BEGIN IMMEDIATE) and then find the schema at head."""
    databases = [Database(database_url) for _ in range(3)]
    start = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def migrate(db: Database) -> None:
        try:
            start.wait(timeout=30)
            getattr(db, how)()
        except BaseException as exc:
            errors.append(exc)

    # Daemon threads: a regression that deadlocks fails the test instead of hanging the run.
    threads = [threading.Thread(target=migrate, args=(db,), daemon=True) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert stored_revision(databases[0]) == HEAD
        assert differences(databases[0]) == []
    finally:
        for db in databases:
            db.close()


# --- both backends behave the same ---------------------------------------------------------------
def test_times_come_back_in_utc_and_zone_aware(database_url: str) -> None:
    """PostgreSQL answers in the session's zone (the test server's is not UTC), SQLite with no
    zone at all; the store hands back UTC-aware times on both, and stores the right instant."""
    db = Database(database_url)
    try:
        db.create_schema()
        plus2 = timezone(timedelta(hours=2))
        with db.session() as s:
            s.add(
                SyncStateRow(
                    key="aware", value="", updated_at=datetime(2024, 5, 1, 14, tzinfo=plus2)
                )
            )
            s.add(SyncStateRow(key="naive", value="", updated_at=datetime(2024, 5, 1, 12)))
        with db.session() as s:
            got = dict(s.execute(select(SyncStateRow.key, SyncStateRow.updated_at)).all())
            later = s.scalars(
                select(SyncStateRow.key).where(
                    SyncStateRow.updated_at >= datetime(2024, 5, 1, 13, 30, tzinfo=plus2)
                )
            ).all()
        for value in got.values():
            assert value == datetime(2024, 5, 1, 12, tzinfo=UTC)
            assert value.tzinfo is UTC
        assert sorted(later) == ["aware", "naive"]  # compared as instants, not wall-clock text
    finally:
        db.close()


# --- URLs and connection failures ----------------------------------------------------------------
def test_postgres_urls_use_psycopg_3() -> None:
    for given in ("postgresql://u:p@h/d", "postgres://u:p@h/d", "postgresql+psycopg://u:p@h/d"):
        url = normalise_url(given)
        assert url.drivername == "postgresql+psycopg"
        assert (url.username, url.password, url.host, url.database) == ("u", "p", "h", "d")
    assert normalise_url("postgresql+psycopg2://h/d").drivername == "postgresql+psycopg2"
    assert normalise_url("postgres+asyncpg://h/d").drivername == "postgresql+asyncpg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        Database("db.internal:5432")
    with pytest.raises(ConfigError, match=r"no database driver for 'postgresql\+nodriver'"):
        Database("postgresql+nodriver://h/d")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_refused_connection_is_transient(scheme: str) -> None:
    db = Database(f"{scheme}://nobody@127.0.0.1:{free_port()}/nothing")
    try:
        assert db.engine.dialect.driver == "psycopg"
        with pytest.raises(TransientError, match=r"^database error: .*127\.0\.0\.1") as caught:
            db.create_schema()
        assert "\n" not in str(caught.value)
        with pytest.raises(TransientError), db.session() as s:
            s.execute(text("SELECT 1"))
    finally:
        db.close()


def test_a_dropped_connection_is_replaced(postgres: PostgresServer) -> None:
    """pool_pre_ping: a connection the server closed (restart, idle timeout) costs a reconnect,
    not an error."""
    url = postgres.new_database("test_dropped")
    db = Database(url)
    try:
        db.create_schema()
        with db.session() as s:
            s.add(SyncStateRow(key="k", value="v"))
        admin = Database(postgres.url_for("postgres"))
        with admin.engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = 'test_dropped' AND pid <> pg_backend_pid()"
                )
            ).scalar()
        admin.close()
        assert killed  # the pooled connection was there, and is gone now
        with db.session() as s:
            assert s.get(SyncStateRow, "k") is not None
    finally:
        db.close()
        postgres.drop_database("test_dropped")


# --- the command line -----------------------------------------------------------------------------
def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_commands(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_0001_era(database_url).close()
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_DATA_DIR", str(tmp_path / "data"))

    code, out, _ = run_main(capsys, "db", "status")
    assert code == 1
    assert f"schema revision: 0001 (this version needs 0005): {OUTDATED}" in out

    # Every other command that opens the database refuses with the one line.
    threads = tmp_path / "t.jsonl"
    threads.write_text(json.dumps({"question": "q?", "answer": "a.", "url": "https://x.org/1"}))
    code, out, err = run_main(capsys, "threads", "import", str(threads))
    assert code == 2
    assert err == f"supportbot: error: {OUTDATED}\n"

    code, out, _ = run_main(capsys, "db", "upgrade")
    assert (code, out) == (0, "upgraded the database schema from revision 0001 to 0005\n")
    code, out, _ = run_main(capsys, "db", "upgrade")
    assert (code, out) == (0, "the database schema is already at revision 0005\n")
    code, out, _ = run_main(capsys, "db", "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert (status["revision"], status["head"], status["up_to_date"]) == ("0005", "0005", True)
    code, out, err = run_main(capsys, "threads", "import", str(threads))
    assert code == 0, err


def test_db_commands_and_run_from_the_shell(tmp_path: Path) -> None:
    """The real entry point, on the default database in the data dir."""

    def supportbot(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
        env["SUPPORTBOT_DATA_DIR"] = str(data)
        env["SUPPORTBOT_WEB_PORT"] = "0"
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=120,
        )

    fresh = tmp_path / "fresh"
    status = supportbot(fresh, "db", "status")
    assert status.returncode == 1, status.stderr
    assert "schema revision: none (this version needs 0005): empty" in status.stdout
    assert f"sqlite:///{(fresh / 'supportbot.db').resolve()}" in status.stdout
    upgrade = supportbot(fresh, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout == "created the database schema at revision 0005\n"
    status = supportbot(fresh, "db", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[-1].endswith("up to date")

    # `run` (here: the local room, which needs no settings) refuses an old schema up front.
    old = tmp_path / "old"
    make_0001_era(f"sqlite:///{(old / 'supportbot.db').resolve()}").close()
    run = supportbot(old, "run")
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1] == f"supportbot: error: {OUTDATED}"

"""Dashboard accounts, signed-in sessions and the failed-login throttle.

Only hashes are stored: scrypt hashes of passwords (made by ``bot.web.passwords``) and SHA-256
digests of session cookie tokens, so a copy of the database signs nobody in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, delete, literal, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.store.database import Database
from bot.store.models import LoginThrottleRow, UserRow, UTCDateTime, WebSessionRow
from bot.timeutil import as_utc


@dataclass(frozen=True)
class UserInfo:
    name: str
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class SessionInfo:
    user_name: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class AttemptCount:
    """What counting one sign-in attempt found (seconds; 0: not so)."""

    refused_for: float  # a key was locked already: refuse without checking the password
    locks_for: float  # this attempt reached the limit: if it fails, the key is locked this long


class AuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- accounts ------------------------------------------------------------------------------
    def add_user(
        self, name: str, password_hash: str, *, update_existing: bool = False
    ) -> Literal["created", "updated", "exists"]:
        with self.db.session() as s:
            row = s.get(UserRow, name)
            if row is None:
                s.add(UserRow(name=name, password_hash=password_hash))
                return "created"
            if not update_existing:
                return "exists"
            row.password_hash = password_hash
            # A new password signs out every browser that knew the old one.
            s.execute(delete(WebSessionRow).where(WebSessionRow.user_name == name))
            return "updated"

    def users(self) -> list[UserInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(UserRow).order_by(UserRow.name)).all()
            return [
                UserInfo(
                    r.name,
                    as_utc(r.created_at),
                    as_utc(r.last_login_at) if r.last_login_at else None,
                )
                for r in rows
            ]

    def remove_user(self, name: str) -> bool:
        with self.db.session() as s:
            s.execute(delete(WebSessionRow).where(WebSessionRow.user_name == name))
            result = s.execute(delete(UserRow).where(UserRow.name == name))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def password_hash(self, name: str) -> str | None:
        with self.db.session() as s:
            return s.scalar(select(UserRow.password_hash).where(UserRow.name == name))

    def record_login(self, name: str, now: datetime, new_hash: str | None = None) -> None:
        values: dict[str, object] = {"last_login_at": now}
        if new_hash is not None:
            values["password_hash"] = new_hash
        with self.db.session() as s:
            s.execute(update(UserRow).where(UserRow.name == name).values(values))

    # --- sessions ------------------------------------------------------------------------------
    def create_session(
        self, token_hash: str, user_name: str, csrf_token: str, expires_at: datetime
    ) -> None:
        with self.db.session() as s:
            s.add(
                WebSessionRow(
                    token_hash=token_hash,
                    user_name=user_name,
                    csrf_token=csrf_token,
                    expires_at=expires_at,
                )
            )

    def session(self, token_hash: str, now: datetime) -> SessionInfo | None:
        """The live session with this token hash; an expired one is deleted on sight."""
        with self.db.session() as s:
            row = s.get(WebSessionRow, token_hash)
            if row is None:
                return None
            expires = as_utc(row.expires_at)
            if expires <= now:
                s.delete(row)
                return None
            return SessionInfo(row.user_name, row.csrf_token, expires)

    def delete_session(self, token_hash: str) -> None:
        with self.db.session() as s:
            s.execute(delete(WebSessionRow).where(WebSessionRow.token_hash == token_hash))

    def purge_expired_sessions(self, now: datetime) -> int:
        with self.db.session() as s:
            result = s.execute(delete(WebSessionRow).where(WebSessionRow.expires_at <= now))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # --- failed-login throttle -----------------------------------------------------------------
    def count_attempt(
        self, keys: Sequence[str], now: datetime, *, max_failures: int, lockout_seconds: float
    ) -> AttemptCount:
        """Count a sign-in attempt against each key, before its password is checked.

        One upsert per key (INSERT ... ON CONFLICT DO UPDATE ... RETURNING), so parallel
        attempts each get their own number and none is lost to a race on a new key. The
        attempt that reaches ``max_failures`` sets the lock; later ones are refused unchecked.
        Counts older than the lockout period, and expired locks, start again from one.
        """
        window = timedelta(seconds=lockout_seconds)
        t = LoginThrottleRow
        at = literal(now, UTCDateTime())
        until = literal(now + window, UTCDateTime())
        expired = or_(
            and_(
                t.locked_until.is_(None), t.last_failure_at < literal(now - window, UTCDateTime())
            ),
            and_(t.locked_until.is_not(None), t.locked_until <= at),
        )
        first_lock = now + window if max_failures <= 1 else None
        refused_for = locks_for = 0.0
        # The same key order in every transaction: two attempts never wait on each other's
        # rows in opposite orders (a deadlock on PostgreSQL).
        with self.db.session() as s:
            for key in sorted(set(keys)):
                stmt = self._insert(t).values(
                    key=key, failures=1, last_failure_at=now, locked_until=first_lock
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=["key"],
                    set_={
                        "failures": case((expired, 1), else_=t.failures + 1),
                        "last_failure_at": at,
                        "locked_until": case(
                            (expired, until if first_lock else null()),
                            (t.locked_until.is_not(None), t.locked_until),
                            (t.failures + 1 >= max_failures, until),
                            else_=null(),
                        ),
                    },
                ).returning(t.failures, t.locked_until)
                failures, locked_until = s.execute(stmt).one()
                remaining = (as_utc(locked_until) - now).total_seconds() if locked_until else 0.0
                if failures > max_failures:
                    refused_for = max(refused_for, remaining, 1.0)
                elif failures == max_failures:
                    locks_for = max(locks_for, remaining)
        return AttemptCount(refused_for=refused_for, locks_for=locks_for)

    def _insert(self, table: type[LoginThrottleRow]) -> Any:
        dialect = postgresql if self.db.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def uncount_attempt(self, key: str, *, max_failures: int) -> None:
        """Take back one counted attempt (a sign-in that succeeded), lifting a lock that
        only it had caused."""
        t = LoginThrottleRow
        with self.db.session() as s:
            s.execute(
                update(t)
                .where(t.key == key, t.failures > 0)
                .values(
                    failures=t.failures - 1,
                    locked_until=case(
                        (t.failures - 1 < max_failures, null()), else_=t.locked_until
                    ),
                )
            )

    def clear_failures(self, keys: Sequence[str]) -> None:
        with self.db.session() as s:
            s.execute(delete(LoginThrottleRow).where(LoginThrottleRow.key.in_(keys)))

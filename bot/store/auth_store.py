"""Dashboard accounts, signed-in sessions and the failed-login throttle.

Only hashes are stored: scrypt hashes of passwords (made by ``bot.web.passwords``) and SHA-256
digests of session cookie tokens, so a copy of the database signs nobody in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update

from bot.store.database import Database
from bot.store.models import LoginThrottleRow, UserRow, WebSessionRow


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already (as ``models.UTCDateTime`` does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
    def locked_for(self, keys: Sequence[str], now: datetime) -> float:
        """Seconds until every key may try again (0: none is locked)."""
        with self.db.session() as s:
            rows = s.scalars(select(LoginThrottleRow).where(LoginThrottleRow.key.in_(keys))).all()
            remaining = [
                (as_utc(r.locked_until) - now).total_seconds() for r in rows if r.locked_until
            ]
        return max([0.0, *remaining])

    def record_failure(
        self, keys: Sequence[str], now: datetime, *, max_failures: int, lockout_seconds: float
    ) -> float:
        """Count a failed login against each key; returns the lockout it caused (0: none).

        Failures older than the lockout period are forgotten, so a typo a week ago does not
        count; reaching ``max_failures`` locks the key and starts the count again.
        """
        window = timedelta(seconds=lockout_seconds)
        locked = 0.0
        with self.db.session() as s:
            for key in dict.fromkeys(keys):
                row = s.get(LoginThrottleRow, key)
                if row is None:
                    row = LoginThrottleRow(key=key, failures=0, last_failure_at=now)
                    s.add(row)
                elif as_utc(row.last_failure_at) + window < now:
                    row.failures = 0
                row.failures += 1
                row.last_failure_at = now
                if row.failures >= max_failures:
                    row.failures = 0
                    row.locked_until = now + window
                    locked = max(locked, lockout_seconds)
        return locked

    def clear_failures(self, keys: Sequence[str]) -> None:
        with self.db.session() as s:
            s.execute(delete(LoginThrottleRow).where(LoginThrottleRow.key.in_(keys)))

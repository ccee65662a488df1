"""The maintainers' digests: who posts each period, what was posted, and the history the
dashboard's Digests page lists.

A period is claimed by inserting its row (the primary key makes one insert win, on SQLite and
PostgreSQL alike), so of several workers that wake for the same Monday 08:00 one posts. A
claim whose worker died before posting is taken over once it is older than the lease; the
text is kept with the claim, so the one who takes over sends the same words with the same
transaction id and the room still shows one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from bot.store.models import DigestRow, utcnow
from bot.store.room_store_base import RoomStoreBase


@dataclass(frozen=True)
class Digest:
    period: str
    state: str  # pending / posted / failed
    claimed_by: str
    claimed_at: datetime
    text: str | None
    room_id: str | None  # the Matrix room it went to; None: the dashboard only
    event_id: str | None
    posted_at: datetime | None
    error: str | None


def _digest(row: DigestRow) -> Digest:
    return Digest(
        period=row.period,
        state=row.state,
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        text=row.text,
        room_id=row.room_id,
        event_id=row.event_id,
        posted_at=row.posted_at,
        error=row.error,
    )


class DigestStore(RoomStoreBase):
    """Claims, texts and outcomes of the maintainers' digests."""

    def claim(self, period: str, worker: str, *, lease: timedelta) -> Digest | None:
        """Claim ``period`` for ``worker``: the row to post from (its ``text`` set when an
        earlier claim got that far), or None when it is posted, failed for good, or another
        worker's claim is younger than ``lease``."""
        now = utcnow()
        with self.db.session() as s:
            row = {"period": period, "state": "pending", "claimed_by": worker, "claimed_at": now}
            if self._insert_new(s, DigestRow, [row], "period"):
                return _digest(s.get_one(DigestRow, period))
            current = s.get_one(DigestRow, period)
            if current.state != "pending" or current.claimed_at > now - lease:
                return None
            # Compare-and-set on the old claim: of two workers taking over, one wins.
            taken = s.execute(
                update(DigestRow)
                .where(
                    DigestRow.period == period,
                    DigestRow.state == "pending",
                    DigestRow.claimed_by == current.claimed_by,
                    DigestRow.claimed_at == current.claimed_at,
                )
                .values(claimed_by=worker, claimed_at=now)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
        return self.get(period)

    def set_text(self, period: str, text: str, room_id: str | None) -> None:
        """Keep the text (and where it goes) with the claim, before it is sent."""
        with self.db.session() as s:
            s.execute(
                update(DigestRow)
                .where(DigestRow.period == period)
                .values(text=text, room_id=room_id, claimed_at=utcnow())
            )

    def mark_posted(self, period: str, event_id: str | None) -> None:
        with self.db.session() as s:
            s.execute(
                update(DigestRow)
                .where(DigestRow.period == period)
                .values(state="posted", event_id=event_id, posted_at=utcnow(), error=None)
            )

    def mark_failed(self, period: str, error: str) -> None:
        """The room refused it for good: kept (with its text, shown on the dashboard), not
        retried."""
        with self.db.session() as s:
            s.execute(
                update(DigestRow)
                .where(DigestRow.period == period)
                .values(state="failed", error=error)
            )

    def get(self, period: str) -> Digest | None:
        with self.db.session() as s:
            row = s.get(DigestRow, period)
            return _digest(row) if row is not None else None

    def recent(self, limit: int = 20) -> list[Digest]:
        """The digests with a text, newest first (posted, failed, or being posted)."""
        with self.db.session() as s:
            rows = s.scalars(
                select(DigestRow)
                .where(DigestRow.text.is_not(None))
                .order_by(DigestRow.claimed_at.desc())
                .limit(limit)
            )
            return [_digest(r) for r in rows]

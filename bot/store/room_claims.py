"""Which worker handles an event: claims, leases, deferred mentions and held decisions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from bot.chat.events import RoomEvent
from bot.store.models import RoomEventRow, utcnow
from bot.store.room_store_base import RoomStoreBase, event_from_row

# The claim holder of a mention that waits for a rate limit to pass: its ``claimed_until`` is
# when it is due. No worker has this name, so the event is nobody's until then, and after it
# the sweepers (and the timer of the worker that deferred it) take it like any other.
DEFERRED = "supportbot:deferred"


def _claimable(worker: str, now: datetime) -> Any:
    """SQL condition: nobody holds the event's claim, this worker does, or the lease ran out."""
    return or_(
        RoomEventRow.claimed_by.is_(None),
        RoomEventRow.claimed_by == worker,
        RoomEventRow.claimed_until.is_(None),
        RoomEventRow.claimed_until < now,
    )


class RoomClaims(RoomStoreBase):
    """The claim columns of ``room_events``; each race is one conditional UPDATE."""

    # --- claims: which worker handles an event -------------------------------------------------
    def claim_event(
        self, event_id: str, worker: str, lease_seconds: float, *, now: datetime | None = None
    ) -> bool:
        """Take or renew this worker's claim on an unhandled event; False if another holds it.

        One conditional UPDATE, so it is atomic: SQLite runs one writer at a time, and
        PostgreSQL, after waiting for a concurrent claimer's row lock, re-checks the WHERE
        clause against the row that claimer committed. Two workers can never both get True
        for one event while its lease runs; after it ran out (the holder died or stalled),
        the first to ask takes it over.
        """
        now = now or utcnow()
        values = {"claimed_by": worker, "claimed_until": now + timedelta(seconds=lease_seconds)}
        return self._update_if_claimable(event_id, worker, now, values)

    def expired_holder(
        self, event_id: str, worker: str, *, now: datetime | None = None
    ) -> str | None:
        """The other worker whose lease on this unhandled event ran out, if any (for logs and
        the takeover metric; the claim itself is decided by ``claim_event`` alone)."""
        now = now or utcnow()
        with self.db.session() as s:
            row = s.execute(
                select(RoomEventRow.claimed_by, RoomEventRow.claimed_until).where(
                    RoomEventRow.event_id == event_id, RoomEventRow.handled_at.is_(None)
                )
            ).first()
        if row is None or row.claimed_by in (None, worker, DEFERRED) or row.claimed_until is None:
            return None
        return str(row.claimed_by) if row.claimed_until < now else None

    def release_claim(self, event_id: str, worker: str) -> None:
        """Give an unhandled event back (stopping mid-way) so others need not wait the lease."""
        with self.db.session() as s:
            s.execute(
                update(RoomEventRow)
                .where(
                    RoomEventRow.event_id == event_id,
                    RoomEventRow.handled_at.is_(None),
                    RoomEventRow.claimed_by == worker,
                )
                .values(claimed_by=None, claimed_until=None)
            )

    def claimable(
        self,
        worker: str,
        *,
        received_before: datetime,
        limit: int,
        now: datetime | None = None,
    ) -> list[tuple[RoomEvent, str | None]]:
        """Unhandled events this worker could claim now, oldest first, with their claimant.

        Only events stored before ``received_before``: a just-persisted event is about to be
        handled by the worker that stored it. Nothing is claimed here; the caller claims each
        event right before handling it.
        """
        now = now or utcnow()
        with self.db.session() as s:
            rows = s.scalars(
                select(RoomEventRow)
                .where(
                    RoomEventRow.handled_at.is_(None),
                    RoomEventRow.received_at < received_before,
                    _claimable(worker, now),
                )
                .order_by(RoomEventRow.origin_ts, RoomEventRow.received_at)
                .limit(limit)
            ).all()
            # A deferral that came due is not a worker whose lease ran out.
            return [
                (event_from_row(r), None if r.claimed_by == DEFERRED else r.claimed_by)
                for r in rows
            ]

    def claim_holders(self, *, now: datetime | None = None) -> set[str]:
        """Workers whose lease on some unhandled event is still running."""
        now = now or utcnow()
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(RoomEventRow.claimed_by)
                    .where(
                        RoomEventRow.handled_at.is_(None),
                        RoomEventRow.claimed_by.is_not(None),
                        RoomEventRow.claimed_by != DEFERRED,
                        RoomEventRow.claimed_until >= now,
                    )
                    .distinct()
                )
            )

    def release_claims(self, workers: Iterable[str]) -> int:
        """Drop every claim these (dead) workers hold on unhandled events; returns how many."""
        names = list(workers)
        if not names:
            return 0
        with self.db.session() as s:
            result = s.execute(
                update(RoomEventRow)
                .where(RoomEventRow.handled_at.is_(None), RoomEventRow.claimed_by.in_(names))
                .values(claimed_by=None, claimed_until=None)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # --- mentions waiting for a rate limit, and the notices that say why one cannot wait -------
    def defer_event(
        self,
        event_id: str,
        worker: str,
        until: datetime,
        outcome: str,
        *,
        now: datetime | None = None,
    ) -> bool:
        """Hand this worker's claim to the deferral until ``until``; False if another holds it.

        The event stays unhandled: a restart loses nothing, and once ``until`` has passed any
        worker may claim it (one conditional UPDATE, as ``claim_event``), so it is handled once.
        ``outcome`` (``deferred:<reason>:<n>``) stays on the row until it is handled.
        """
        now = now or utcnow()
        values = {"claimed_by": DEFERRED, "claimed_until": until, "outcome": outcome[:64]}
        return self._update_if_claimable(event_id, worker, now, values)

    def _update_if_claimable(
        self, event_id: str, worker: str, now: datetime, values: dict[str, Any]
    ) -> bool:
        """Set ``values`` on an unhandled event ``worker`` may claim now, in one conditional
        UPDATE (see ``claim_event``); True when the row was updated."""
        with self.db.session() as s:
            result = s.execute(
                update(RoomEventRow)
                .where(
                    RoomEventRow.event_id == event_id,
                    RoomEventRow.handled_at.is_(None),
                    _claimable(worker, now),
                )
                .values(**values)
            )
            return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    def hold_outcome(self, event_id: str, worker: str, outcome: str) -> bool:
        """Record a decision (``notice:<reason>``) on an unhandled event before acting on it, so
        a restart repeats that decision instead of taking another; False if another holds it."""
        return self._update_if_claimable(event_id, worker, utcnow(), {"outcome": outcome[:64]})

    def held_outcome(self, event_id: str) -> str | None:
        """The decision stored on a not yet handled event (``deferred:...``, ``notice:...``)."""
        with self.db.session() as s:
            return s.scalar(
                select(RoomEventRow.outcome).where(
                    RoomEventRow.event_id == event_id, RoomEventRow.handled_at.is_(None)
                )
            )

    def waiting_mentions(self, room_id: str, user: str) -> tuple[int, int]:
        """Deferred mentions not yet picked up again: (this user's, this room's)."""
        waiting = (RoomEventRow.handled_at.is_(None), RoomEventRow.claimed_by == DEFERRED)
        with self.db.session() as s:
            by_user = s.scalar(
                select(func.count())
                .select_from(RoomEventRow)
                .where(*waiting, RoomEventRow.sender == user)
            )
            in_room = s.scalar(
                select(func.count())
                .select_from(RoomEventRow)
                .where(*waiting, RoomEventRow.room_id == room_id)
            )
        return int(by_user or 0), int(in_room or 0)

    def notices_since(
        self, since: datetime, *, room_id: str | None = None, user: str | None = None
    ) -> int:
        """ "Can't answer this now" notices sent after ``since`` or still on their way."""
        query = (
            select(func.count())
            .select_from(RoomEventRow)
            .where(
                RoomEventRow.outcome.like("notice:%"),
                or_(RoomEventRow.handled_at.is_(None), RoomEventRow.handled_at > since),
            )
        )
        if room_id is not None:
            query = query.where(RoomEventRow.room_id == room_id)
        if user is not None:
            query = query.where(RoomEventRow.sender == user)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

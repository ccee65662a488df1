"""The few queries for the ``past_answers`` table: upsert and delete by key, list, count.

Rows go in and come out as :class:`bot.corpus.past_answers.PastAnswer`. Times are
kept in UTC: a naive ``created_at`` is taken as UTC, and what comes back is always
timezone-aware (``UTCDateTime`` columns do that on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bot.corpus.past_answers import PastAnswer
from bot.store.database import Database
from bot.store.models import PastAnswerRow, utcnow
from bot.timeutil import as_utc

UpsertOutcome = Literal["new", "updated", "unchanged"]

# Compared to decide "unchanged"; the room-side ids are compared only when a caller passes them.
_FIELDS = (
    "question",
    "answer",
    "url",
    "title",
    "asked_by",
    "answered_by",
    "created_at",
    "source",
    "established_by",
)
_ROOM_FIELDS = ("room_id", "question_event_id", "answer_event_id")
_IN_BATCH = 500


@dataclass
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, outcome: UpsertOutcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def __iadd__(self, other: UpsertCounts) -> UpsertCounts:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged


def _values(pa: PastAnswer) -> dict[str, object]:
    return {
        "question": pa.question,
        "answer": pa.answer,
        "url": pa.url,
        "title": pa.title,
        "asked_by": pa.asked_by,
        "answered_by": pa.answered_by,
        "created_at": as_utc(pa.created_at),
        "source": pa.source,
        "established_by": pa.established_by,
    }


def _same(old: object, new: object) -> bool:
    if isinstance(old, datetime) or isinstance(new, datetime):
        return as_utc(old) == as_utc(new)  # type: ignore[call-overload]
    return old == new


def to_past_answer(row: PastAnswerRow) -> PastAnswer:
    return PastAnswer(
        key=row.key,
        question=row.question,
        answer=row.answer,
        url=row.url,
        title=row.title,
        asked_by=row.asked_by,
        answered_by=row.answered_by,
        created_at=as_utc(row.created_at),
        source=row.source,
        established_by=row.established_by,
    )


@dataclass(frozen=True)
class PendingPair:
    """A pair proposed by the asker's reaction, waiting for a maintainer on the dashboard."""

    key: str
    question: str
    answer: str
    url: str
    asked_by: str | None
    answered_by: str | None
    room_id: str | None
    proposed_at: datetime


def upsert_in(
    s: Session,
    pa: PastAnswer,
    *,
    room_id: str | None = None,
    question_event_id: str | None = None,
    answer_event_id: str | None = None,
    review: str = "approved",
) -> UpsertOutcome:
    """``PastAnswerStore.upsert`` inside a caller's transaction (the room side's learning).

    ``review`` "pending" stores a pair that is not indexed until a maintainer approves it."""
    room: dict[str, object] = {
        "room_id": room_id,
        "question_event_id": question_event_id,
        "answer_event_id": answer_event_id,
        "review": review,
        "reviewed_by": None,
        "reviewed_at": None,
    }
    return PastAnswerStore._apply(s, s.get(PastAnswerRow, pa.key), pa, room)[0]


class PastAnswerStore:
    """Short transactions over ``past_answers``; one per call (``upsert_many``: per batch)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(
        self,
        pa: PastAnswer,
        *,
        room_id: str | None = None,
        question_event_id: str | None = None,
        answer_event_id: str | None = None,
    ) -> UpsertOutcome:
        """Insert or update the row with ``pa.key``; ``updated_at`` moves only on a change.

        The room-side ids are written as given (``None`` clears them).
        """
        with self.db.session() as s:
            return upsert_in(
                s,
                pa,
                room_id=room_id,
                question_event_id=question_event_id,
                answer_event_id=answer_event_id,
            )

    def upsert_many(
        self, items: Iterable[PastAnswer], *, batch_size: int = _IN_BATCH
    ) -> UpsertCounts:
        """Upsert each item, ``batch_size`` per transaction; the room-side ids are left alone.

        A key that appears twice is applied twice, in order (the later one wins).
        """
        counts = UpsertCounts()
        batch: list[PastAnswer] = []
        for pa in items:
            batch.append(pa)
            if len(batch) >= batch_size:
                counts += self._upsert_batch(batch)
                batch = []
        if batch:
            counts += self._upsert_batch(batch)
        return counts

    def _upsert_batch(self, batch: list[PastAnswer]) -> UpsertCounts:
        counts = UpsertCounts()
        keys = list(dict.fromkeys(pa.key for pa in batch))
        with self.db.session() as s:
            rows: dict[str, PastAnswerRow] = {}
            for start in range(0, len(keys), _IN_BATCH):
                part = keys[start : start + _IN_BATCH]
                for row in s.scalars(select(PastAnswerRow).where(PastAnswerRow.key.in_(part))):
                    rows[row.key] = row
            for pa in batch:
                outcome, rows[pa.key] = self._apply(s, rows.get(pa.key), pa, None)
                counts.add(outcome)
        return counts

    @staticmethod
    def _apply(
        s: Session,
        row: PastAnswerRow | None,
        pa: PastAnswer,
        room: dict[str, object] | None,
    ) -> tuple[UpsertOutcome, PastAnswerRow]:
        values = _values(pa)
        if room is not None:
            values.update(room)
        if row is None:
            row = PastAnswerRow(key=pa.key, updated_at=utcnow(), **values)
            s.add(row)
            return "new", row
        changed = False
        for name, value in values.items():
            if not _same(getattr(row, name), value):
                setattr(row, name, value)
                changed = True
        if not changed:
            return "unchanged", row
        row.updated_at = utcnow()
        return "updated", row

    def delete(self, key: str) -> bool:
        """Remove the row with this key; ``False`` when there was none."""
        with self.db.session() as s:
            result = s.execute(delete(PastAnswerRow).where(PastAnswerRow.key == key))
            return bool(getattr(result, "rowcount", 0))

    def get(self, key: str) -> PastAnswer | None:
        with self.db.session() as s:
            row = s.get(PastAnswerRow, key)
            return to_past_answer(row) if row else None

    def list_all(self) -> list[PastAnswer]:
        """Every approved past answer, ordered by key (a stable order for index builds).
        Pairs waiting for a maintainer's review, or rejected, are never indexed."""
        with self.db.session() as s:
            rows = s.scalars(
                select(PastAnswerRow)
                .where(PastAnswerRow.review == "approved")
                .order_by(PastAnswerRow.key)
            ).all()
            return [to_past_answer(r) for r in rows]

    def pending(self, *, limit: int = 200) -> list[PendingPair]:
        """Pairs waiting for a maintainer's review, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(PastAnswerRow)
                .where(PastAnswerRow.review == "pending")
                .order_by(PastAnswerRow.updated_at, PastAnswerRow.key)
                .limit(limit)
            ).all()
            return [
                PendingPair(
                    key=r.key,
                    question=r.question,
                    answer=r.answer,
                    url=r.url,
                    asked_by=r.asked_by,
                    answered_by=r.answered_by,
                    room_id=r.room_id,
                    proposed_at=as_utc(r.updated_at) or utcnow(),
                )
                for r in rows
            ]

    def review(self, key: str, *, approve: bool, user: str) -> bool:
        """A maintainer's decision on a pending pair; ``False`` when it is not pending (gone,
        replaced by a maintainer's answer, or decided already)."""
        with self.db.session() as s:
            result = s.execute(
                update(PastAnswerRow)
                .where(PastAnswerRow.key == key, PastAnswerRow.review == "pending")
                .values(
                    review="approved" if approve else "rejected",
                    reviewed_by=user,
                    reviewed_at=utcnow(),
                )
            )
            return bool(getattr(result, "rowcount", 0))

    def count_by_source(self) -> dict[str, int]:
        """Rows per ``source`` ("room", "import:jsonl", "import:gitter", ...)."""
        with self.db.session() as s:
            rows = s.execute(
                select(PastAnswerRow.source, func.count())
                .group_by(PastAnswerRow.source)
                .order_by(PastAnswerRow.source)
            ).all()
            return {source: int(n) for source, n in rows}

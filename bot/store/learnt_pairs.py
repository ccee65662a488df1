"""Past answers learnt from the room: the stored pairs, and writing what learning decided."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, or_, select, update

from bot.corpus.pair_changes import Change, Remove, StoredPair, UpdateText, Upsert
from bot.store.models import PastAnswerRow, utcnow
from bot.store.past_answers import upsert_in
from bot.store.room_store_base import RoomStoreBase


class LearntPairs(RoomStoreBase):
    """The ``past_answers`` rows that ``bot.room.learning`` keeps in step with the room."""

    @staticmethod
    def _stored(row: PastAnswerRow) -> StoredPair:
        return StoredPair(
            row.key, row.established_by, row.question_event_id, row.answer_event_id, row.review
        )

    def pair_for_question(self, question_event_id: str) -> StoredPair | None:
        with self.db.session() as s:
            row = s.scalars(
                select(PastAnswerRow).where(PastAnswerRow.question_event_id == question_event_id)
            ).first()
            return self._stored(row) if row else None

    def pairs_touching(self, event_id: str) -> list[StoredPair]:
        with self.db.session() as s:
            rows = s.scalars(
                select(PastAnswerRow).where(
                    or_(
                        PastAnswerRow.question_event_id == event_id,
                        PastAnswerRow.answer_event_id == event_id,
                    )
                )
            ).all()
            return [self._stored(r) for r in rows]

    def apply_changes(self, changes: Sequence[Change]) -> int:
        """Write what ``bot.room.learning.learn`` decided; returns how many pairs changed."""
        changed = 0
        with self.db.session() as s:
            for change in changes:
                if isinstance(change, Upsert):
                    if change.review != "approved":
                        # Decided on a lookup outside this transaction: check again, so a
                        # proposal never takes the place of an approved pair.
                        existing = s.get(PastAnswerRow, change.pair.key)
                        if existing is not None and existing.review == "approved":
                            continue
                    upsert_in(
                        s,
                        change.pair,
                        room_id=change.room_id,
                        question_event_id=change.question_event_id,
                        answer_event_id=change.answer_event_id,
                        review=change.review,
                    )
                    changed += 1
                elif isinstance(change, UpdateText):
                    for column in ("question", "answer"):
                        id_column = getattr(PastAnswerRow, f"{column}_event_id")
                        result = s.execute(
                            update(PastAnswerRow)
                            .where(id_column == change.event_id)
                            .values({column: change.body, "updated_at": utcnow()})
                        )
                        changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
                elif isinstance(change, Remove):
                    result = s.execute(
                        delete(PastAnswerRow).where(
                            or_(
                                PastAnswerRow.question_event_id == change.event_id,
                                PastAnswerRow.answer_event_id == change.event_id,
                            )
                        )
                    )
                    changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return changed

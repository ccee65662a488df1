"""What handling one room event came to: a typed value whose ``code`` is the string stored.

The database (``room_events.outcome``), the dashboard and the metrics read those strings, so
``Outcome.code`` gives exactly the string stored before outcomes were typed:
``kind[:detail[:detail]]``, e.g. ``replied``, ``suppressed:user-cooldown`` or
``deferred:room-rate:2``. The asker's edit of a question that the bot answered again
records ``replied:edit`` (or ``replied:unsure:edit``); an edit that gets nothing, ``ignored:edit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    REPLIED = "replied"
    ALREADY_REPLIED = "already-replied"
    IGNORED = "ignored"
    REDACTION = "redaction"  # a moderator's redaction, recorded so the dashboard blanks it
    FEEDBACK = "feedback"
    NOT_A_QUESTION = "not-a-question"
    HISTORY = "history"
    TRIAGE = "triage"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    NOTICE = "notice"
    ANSWERED_MEANWHILE = "answered-meanwhile"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    """One event's outcome: its kind and the details after it (reasons, counts)."""

    kind: Kind
    detail: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        """The stored form, as the database and the dashboard read it."""
        return ":".join((self.kind.value, *self.detail))

    @classmethod
    def parse(cls, code: str) -> Outcome:
        """The outcome a stored ``code`` records (``ValueError`` for an unknown kind)."""
        kind, *detail = code.split(":")
        return cls(Kind(kind), tuple(detail))

    def __str__(self) -> str:
        return self.code

    # --- the outcomes the handler reaches --------------------------------------------------------
    @classmethod
    def replied(cls, *, confident: bool) -> Outcome:
        return cls(Kind.REPLIED) if confident else cls(Kind.REPLIED, ("unsure",))

    def for_edit(self) -> Outcome:
        """A reply's outcome as recorded on the asker's edit it answered (``replied:edit``,
        ``replied:unsure:edit``); any other outcome as it is."""
        return Outcome(self.kind, (*self.detail, "edit")) if self.kind is Kind.REPLIED else self

    @classmethod
    def ignored(cls, reason: str) -> Outcome:
        return cls(Kind.IGNORED, (reason,))

    @classmethod
    def suppressed(cls, reason: str, told: str | None = None) -> Outcome:
        return cls(Kind.SUPPRESSED, (reason,) if told is None else (reason, told))

    @classmethod
    def deferred(cls, reason: str, rounds: int) -> Outcome:
        return cls(Kind.DEFERRED, (reason, str(rounds)))

    @classmethod
    def notice(cls, action: str) -> Outcome:
        return cls(Kind.NOTICE, (action,))

    @classmethod
    def error(cls, what: str) -> Outcome:
        return cls(Kind.ERROR, (what,))


ALREADY_REPLIED = Outcome(Kind.ALREADY_REPLIED)
FEEDBACK = Outcome(Kind.FEEDBACK)
NOT_A_QUESTION = Outcome(Kind.NOT_A_QUESTION)
HISTORY = Outcome(Kind.HISTORY)
TRIAGE = Outcome(Kind.TRIAGE)
TRIAGE_LOW_CONFIDENCE = Outcome(Kind.TRIAGE, ("low-confidence",))
ANSWERED_MEANWHILE = Outcome(Kind.ANSWERED_MEANWHILE)
SEND_REJECTED = Outcome.error("send-rejected")
NOTICE_REJECTED = Outcome.error("notice-rejected")

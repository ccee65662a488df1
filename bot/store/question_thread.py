"""One question in its thread, as the dashboard shows it (blocking: give it a session).

The thread is read from the stored room events: the thread root, the messages in the thread
and the replies to the question. Edits show their author's latest text, redactions blank a
message (when they count), and what the bot sent shows at once, before the room echoes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bot.chat.events import thread_of
from bot.store.models import DashboardPostRow, ReplyRow, RoomEventRow
from bot.timeutil import as_utc, utc_from_ms

# The outcome the service records for a redaction sent by a moderator (by power level).
MODERATOR_REDACTION = "redaction:moderator"


@dataclass(frozen=True)
class ThreadMessage:
    event_id: str
    sender: str
    body: str
    sent_at: datetime | None
    is_question: bool = False
    edited: bool = False
    deleted: bool = False
    note: str | None = None  # e.g. "the bot's reply (not seen back from the room yet)"
    by_bot: bool = False  # the bot's reply or a dashboard post: Markdown the bot sent


def posted_note(post: DashboardPostRow) -> str:
    """How a message posted from the dashboard is labelled in the thread."""
    return f"posted by {post.posted_by} from the dashboard"


def _thread_rows(s: Session, question: RoomEventRow) -> list[RoomEventRow]:
    """The messages of the question's thread: its root, the question, the messages in the
    thread and the replies to the question (edits are not messages of their own)."""
    event_id = question.event_id
    root = thread_of(question) or event_id
    return list(
        s.scalars(
            select(RoomEventRow).where(
                RoomEventRow.event_type == "m.room.message",
                or_(RoomEventRow.rel_type.is_(None), RoomEventRow.rel_type != "m.replace"),
                or_(
                    RoomEventRow.event_id.in_({root, event_id}),
                    and_(
                        RoomEventRow.rel_type == "m.thread",
                        RoomEventRow.relates_to == root,
                    ),
                    RoomEventRow.in_reply_to == event_id,
                ),
            )
        )
    )


def _latest_edits(s: Session, sender_of: dict[str, str]) -> dict[str, str]:
    """The latest text of each edited message, by its event id."""
    edits: dict[str, str] = {}
    for edit in s.scalars(
        select(RoomEventRow)
        .where(RoomEventRow.rel_type == "m.replace", RoomEventRow.relates_to.in_(sorted(sender_of)))
        .order_by(RoomEventRow.origin_ts)
    ):
        # Only the author's own edits count (as in Matrix clients); the last one wins.
        if edit.relates_to and sender_of.get(edit.relates_to) == edit.sender:
            edits[edit.relates_to] = edit.body
    return edits


def _redacted(s: Session, sender_of: dict[str, str]) -> set[str]:
    """The messages whose redaction counts."""
    # Anyone may send a redaction; it counts from the message's sender, or from a
    # moderator (the service records that outcome when it handles the redaction).
    return {
        target
        for target, by, outcome in s.execute(
            select(RoomEventRow.relates_to, RoomEventRow.sender, RoomEventRow.outcome).where(
                RoomEventRow.event_type == "m.room.redaction",
                RoomEventRow.relates_to.in_(sorted(sender_of)),
            )
        )
        if target and (by == sender_of.get(target) or outcome == MODERATOR_REDACTION)
    }


def _sent_posts(s: Session, event_id: str) -> dict[str | None, DashboardPostRow]:
    """The replies posted from the dashboard to this question, by their reply event id."""
    return {
        post.reply_event_id: post
        for post in s.scalars(
            select(DashboardPostRow).where(
                DashboardPostRow.question_event_id == event_id,
                DashboardPostRow.state == "sent",
            )
        )
    }


def _not_echoed_yet(
    reply: ReplyRow | None, posts: dict[str | None, DashboardPostRow], seen: set[str]
) -> list[ThreadMessage]:
    """What the bot sent that the room has not echoed back through /sync yet (shown at once)."""
    messages: list[ThreadMessage] = []
    if reply is not None and reply.state == "sent" and reply.reply_event_id not in seen:
        messages.append(
            ThreadMessage(
                event_id=reply.reply_event_id or "",
                sender="the bot",
                body=reply.body,
                sent_at=as_utc(reply.sent_at),
                note="the bot's reply, not yet seen back from the room",
                by_bot=True,
            )
        )
    for reply_id, post in posts.items():
        if reply_id not in seen:
            messages.append(
                ThreadMessage(
                    event_id=reply_id or "",
                    sender="the bot",
                    body=post.body,
                    sent_at=as_utc(post.sent_at),
                    note=posted_note(post),
                    by_bot=True,
                )
            )
    return messages


def read_thread(s: Session, event_id: str) -> list[ThreadMessage]:
    """The question with its thread, in time order: the thread root, messages in the thread,
    replies to the question, and the bot's or the dashboard's replies even before the room
    echoes them back. Edits show their latest text; redactions blank a message."""
    question = s.get(RoomEventRow, event_id)
    if question is None:
        return []
    rows = _thread_rows(s, question)
    sender_of = {r.event_id: r.sender for r in rows}
    edits = _latest_edits(s, sender_of)
    redacted = _redacted(s, sender_of)
    posts = _sent_posts(s, event_id)
    # What the bot sent: its reply to this question and the posts made from here.
    reply = s.get(ReplyRow, event_id)
    bot_sent = set(posts)
    if reply is not None and reply.reply_event_id:
        bot_sent.add(reply.reply_event_id)
    messages = [
        ThreadMessage(
            event_id=r.event_id,
            sender=r.sender,
            body="" if r.event_id in redacted else edits.get(r.event_id, r.body),
            sent_at=utc_from_ms(r.origin_ts) if r.origin_ts else None,
            is_question=r.event_id == event_id,
            edited=r.event_id in edits,
            deleted=r.event_id in redacted,
            note=posted_note(posts[r.event_id]) if r.event_id in posts else None,
            by_bot=r.event_id in bot_sent,
        )
        for r in rows
    ]
    messages += _not_echoed_yet(reply, posts, set(sender_of))
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(messages, key=lambda m: m.sent_at or far_future)

"""The embedded local room: try the bot without a homeserver, an account or a token.

``LocalRoom`` keeps one room's timeline in the ``local_room_events`` table, each event stored
in the Matrix client-server shape, so the rest of the bot (``parse_event``, the store, the
policy, learning) cannot tell it from a Matrix room. ``seq`` orders the timeline and is the
sync token. ``LocalTransport`` is the ``ChatTransport`` over it: ``sync`` long-polls the table,
``send_reply`` appends the bot's threaded notice.

Posting is blocking SQLAlchemy (call it through ``asyncio.to_thread`` from async code); a post
wakes the long-polls of this process at once, and waiters also re-read the table every
``POLL_SECONDS`` so a post written by another process is seen too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, inspect, or_, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from bot.chat.events import storable_text
from bot.chat.local_input import (
    MAX_BODY_BYTES,
    LocalRoomInputError,
    check_body,
    check_name,
    localpart,
    relation,
    thread_root_of,
)
from bot.errors import SchemaOutdatedError
from bot.store.database import Database
from bot.store.models import LocalRoomEventRow, ReplyRow, RoomEventRow
from bot.store.room_store import SYNC_TOKEN_KEY, RoomStore

log = logging.getLogger(__name__)

MAX_REACTION_KEY = 64
_TXN_RE = re.compile(r"[A-Za-z0-9._~-]{1,100}")
POLL_SECONDS = 1.0
# How far back a thread reply looks for the thread's latest event (the reply fallback).
_THREAD_SCAN = 2000

Raw = dict[str, Any]


@dataclass(frozen=True)
class Retention:
    """How much of the local timeline to keep (see ``LocalRoom.prune``)."""

    keep_events: int = 10_000  # the newest this many; 0: no cap
    keep_days: float = 30.0  # 0: no age limit
    every_seconds: float = 60.0  # prune after a post at most this often


def event_size(raw: Mapping[str, Any]) -> int:
    """An event's size as JSON (UTF-8 bytes): what drawing or sending it costs, roughly."""
    return len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def within_budget(
    rows: Iterable[tuple[int, Raw]], max_events: int, max_bytes: int | None
) -> list[tuple[int, Raw]]:
    """The leading rows that fit ``max_bytes`` (always at least one), at most ``max_events``."""
    kept: list[tuple[int, Raw]] = []
    used = 0
    for row in rows:
        if len(kept) >= max_events:
            break
        if max_bytes is not None:
            used += event_size(row[1])
            if used > max_bytes and kept:
                break
        kept.append(row)
    return kept


class LocalRoom:
    """One room whose timeline lives in the database (see the module docstring)."""

    def __init__(
        self, db: Database, room_id: str, bot_user: str, *, retention: Retention | None = None
    ) -> None:
        if not room_id.startswith("!") or ":" not in room_id:
            raise ValueError(f"local room id must look like !name:server, not {room_id!r}")
        if not bot_user.startswith("@") or ":" not in bot_user:
            raise ValueError(f"local bot user must look like @name:server, not {bot_user!r}")
        self.db = db
        self.room_id = room_id
        self.bot_user = bot_user
        self.server = room_id.split(":", 1)[1]
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self.retention = retention
        self._next_prune = 0.0  # time.monotonic() after which a post may prune

    def __repr__(self) -> str:
        return f"LocalRoom({self.room_id!r})"

    def ensure(self) -> None:
        """Check the database holds the timeline table (the room itself is implicit).

        The schema belongs to the migrations (``Database.create_schema``); creating the table
        here would leave a database the next migration cannot apply to.
        """
        if not inspect(self.db.engine).has_table(LocalRoomEventRow.__tablename__):
            raise SchemaOutdatedError(
                "the database has no local_room_events table: run `supportbot db upgrade`"
            )

    def user_id_for(self, name: str) -> str:
        """The user id a person posting as ``name`` gets: ``@name:server`` (lower case)."""
        user = f"@{check_name(name).lower()}:{self.server}"
        if user == self.bot_user or localpart(user) == localpart(self.bot_user).lower():
            raise LocalRoomInputError(f"the name {name.strip()!r} is the bot's; pick another")
        return user

    # --- writing -------------------------------------------------------------------------------
    def post(
        self,
        sender: str,
        body: str,
        *,
        thread_root: str | None = None,
        in_reply_to: str | None = None,
        mentions: Iterable[str] = (),
        msgtype: str = "m.text",
        formatted_body: str | None = None,
        txn_id: str | None = None,
    ) -> str:
        """Append a message; return its event id (the first one's when ``txn_id`` repeats).

        In a thread without an explicit ``in_reply_to`` the reply fallback points at the
        thread's latest event, as Matrix clients do, so "thanks!" after the bot's answer reads
        as feedback on it rather than as the question asked again.
        """
        self._check_sender(sender)
        content: Raw = {"msgtype": msgtype, "body": check_body(body)}
        if formatted_body is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = formatted_body
        if thread_root or in_reply_to:
            content["m.relates_to"] = self._relation(thread_root, in_reply_to)
        content["m.mentions"] = {"user_ids": list(dict.fromkeys(mentions))}
        return self.send(sender, content, txn_id=txn_id)

    def post_reaction(
        self, sender: str, target_event_id: str, key: str, *, txn_id: str | None = None
    ) -> str:
        """Annotate a message with ``key`` (an emoji); reacting twice returns the first one."""
        self._check_sender(sender)
        key = key.strip()
        if not key or len(key) > MAX_REACTION_KEY:
            raise LocalRoomInputError(f"a reaction is 1 to {MAX_REACTION_KEY} characters")
        target = self.event(target_event_id)
        if target is None or target.get("type") != "m.room.message":
            raise LocalRoomInputError(f"no message {target_event_id!r} in this room")
        with self.db.session() as s:
            rows = s.scalars(
                select(LocalRoomEventRow.event).where(
                    LocalRoomEventRow.room_id == self.room_id, LocalRoomEventRow.sender == sender
                )
            )
            for raw in rows:
                relates = relation(raw)
                if (
                    raw.get("type") == "m.reaction"
                    and relates.get("event_id") == target_event_id
                    and relates.get("key") == key
                ):
                    return str(raw["event_id"])
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": target_event_id, "key": key}
        }
        return self.send(sender, content, event_type="m.reaction", txn_id=txn_id)

    def send(
        self,
        sender: str,
        content: Mapping[str, Any],
        *,
        event_type: str = "m.room.message",
        txn_id: str | None = None,
    ) -> str:
        """Append an event with ready-made ``content``; idempotent per (sender, ``txn_id``).

        Transaction ids are scoped to the sender, as Matrix scopes them to a device, so one
        person cannot collide with (or pre-empt) another's.
        """
        if event_type == "m.room.message":
            body = content.get("body")
            if not isinstance(body, str) or not body.strip():
                raise LocalRoomInputError("the message is empty")
            if len(body.encode("utf-8")) > MAX_BODY_BYTES:
                raise LocalRoomInputError(f"the message is longer than {MAX_BODY_BYTES} bytes")
        if txn_id is not None and not _TXN_RE.fullmatch(txn_id):
            raise LocalRoomInputError("a transaction id is 1 to 100 URL-safe characters")
        key = f"{sender}/{txn_id}" if txn_id is not None else None
        try:
            event_id = self._insert(sender, event_type, content, key)
        except IntegrityError:
            # Two posts with one transaction id raced; the loser returns the winner's event.
            existing = self._by_txn(key) if key else None
            if existing is None:
                raise
            return existing
        self._notify()
        self._maybe_prune()
        return event_id

    # --- retention -----------------------------------------------------------------------------
    def _maybe_prune(self) -> None:
        retention = self.retention
        if retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + retention.every_seconds
        try:
            pruned = self.prune()
        except SQLAlchemyError:  # retention is housekeeping: the post itself went through
            log.exception("pruning the local room failed")
            return
        if pruned:
            log.info("local room: pruned %d old events", pruned)

    def prune(self, *, now_ms: int | None = None) -> int:
        """Delete events beyond the retention (older than ``keep_days`` or behind the newest
        ``keep_events``); return how many.

        Never deleted: events the bot has not read yet (after its sync token), events it has
        read but not finished handling, and questions whose reply is still on its way.
        """
        retention = self.retention
        if retention is None or not (retention.keep_events or retention.keep_days):
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        token = RoomStore(self.db).get_state(SYNC_TOKEN_KEY)
        read_upto = int(token) if token is not None and token.isdigit() else 0
        with self.db.session() as s:
            too_old = []
            if retention.keep_events:
                cutoff = s.scalar(
                    select(LocalRoomEventRow.seq)
                    .where(LocalRoomEventRow.room_id == self.room_id)
                    .order_by(LocalRoomEventRow.seq.desc())
                    .offset(retention.keep_events - 1)
                    .limit(1)
                )
                if cutoff is not None:
                    too_old.append(LocalRoomEventRow.seq < cutoff)
            if retention.keep_days:
                oldest_ms = now_ms - int(retention.keep_days * 86_400_000)
                too_old.append(LocalRoomEventRow.origin_ts < oldest_ms)
            if not too_old:
                return 0
            unhandled = select(RoomEventRow.event_id).where(
                RoomEventRow.room_id == self.room_id, RoomEventRow.handled_at.is_(None)
            )
            replying = select(ReplyRow.question_event_id).where(ReplyRow.state == "pending")
            result = s.execute(
                delete(LocalRoomEventRow).where(
                    LocalRoomEventRow.room_id == self.room_id,
                    LocalRoomEventRow.seq <= read_upto,
                    or_(*too_old),
                    LocalRoomEventRow.event_id.not_in(unhandled),
                    LocalRoomEventRow.event_id.not_in(replying),
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def _insert(
        self, sender: str, event_type: str, content: Mapping[str, Any], txn_key: str | None
    ) -> str:
        with self.db.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                # Sequence numbers are handed out before commit: with concurrent writers seq 11
                # could commit before seq 10 and a sync that already passed 11 would never see
                # 10. Serialising writers makes commit order the seq order (readers never wait).
                s.execute(text(f"LOCK TABLE {LocalRoomEventRow.__tablename__} IN EXCLUSIVE MODE"))
            if txn_key is not None:
                existing = s.scalar(
                    select(LocalRoomEventRow.event_id).where(LocalRoomEventRow.txn_id == txn_key)
                )
                if existing is not None:
                    return existing
            event_id = "$" + secrets.token_urlsafe(18)
            origin_ts = int(time.time() * 1000)
            raw: Raw = {
                "type": event_type,
                "event_id": event_id,
                "sender": sender,
                "room_id": self.room_id,
                "origin_server_ts": origin_ts,
                "content": dict(content),
            }
            s.add(
                LocalRoomEventRow(
                    room_id=self.room_id,
                    event_id=event_id,
                    sender=sender,
                    txn_id=txn_key,
                    event=raw,
                    origin_ts=origin_ts,
                )
            )
        return event_id

    def _by_txn(self, txn_key: str) -> str | None:
        with self.db.session() as s:
            return s.scalar(
                select(LocalRoomEventRow.event_id).where(LocalRoomEventRow.txn_id == txn_key)
            )

    def _check_sender(self, sender: str) -> None:
        if sender == self.bot_user:
            return
        if not sender.startswith("@") or not sender.endswith(":" + self.server):
            raise LocalRoomInputError(f"{sender!r} is not a user of {self.room_id}")
        check_name(localpart(sender))

    def _relation(self, thread_root: str | None, in_reply_to: str | None) -> Raw:
        with self.db.session() as s:
            if in_reply_to is not None and self._row(s, in_reply_to) is None:
                raise LocalRoomInputError(f"no message {in_reply_to!r} to reply to")
            if thread_root is None:
                return {"m.in_reply_to": {"event_id": in_reply_to}}
            root = self._row(s, thread_root)
            if root is None or root.event.get("type") != "m.room.message":
                raise LocalRoomInputError(f"no message {thread_root!r} to reply to in a thread")
            # Threads do not nest: a reply to a thread reply joins that reply's thread.
            outer = thread_root_of(root.event)
            if outer is not None:
                thread_root = outer
                root = self._row(s, outer) or root
            fallback = in_reply_to or self._latest_in_thread(s, thread_root, root.seq)
        return {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": in_reply_to is None,
            "m.in_reply_to": {"event_id": fallback},
        }

    def _row(self, s: Session, event_id: str) -> LocalRoomEventRow | None:
        if storable_text(event_id) != event_id:
            return None  # no stored id holds NUL or a lone surrogate (PostgreSQL refuses them)
        return s.scalar(
            select(LocalRoomEventRow).where(
                LocalRoomEventRow.event_id == event_id, LocalRoomEventRow.room_id == self.room_id
            )
        )

    def _latest_in_thread(self, s: Session, root: str, root_seq: int) -> str:
        rows = s.scalars(
            select(LocalRoomEventRow.event)
            .where(LocalRoomEventRow.room_id == self.room_id, LocalRoomEventRow.seq > root_seq)
            .order_by(LocalRoomEventRow.seq.desc())
            .limit(_THREAD_SCAN)
        )
        for raw in rows:
            if raw.get("type") == "m.room.message" and thread_root_of(raw) == root:
                return str(raw["event_id"])
        return root

    # --- reading -------------------------------------------------------------------------------
    def head(self) -> int:
        """The newest ``seq`` in this room (0 for an empty room)."""
        with self.db.session() as s:
            return int(
                s.scalar(
                    select(func.max(LocalRoomEventRow.seq)).where(
                        LocalRoomEventRow.room_id == self.room_id
                    )
                )
                or 0
            )

    def events_after(
        self, seq: int, limit: int = 100, max_bytes: int | None = None
    ) -> list[tuple[int, Raw]]:
        """Events with ``seq`` above the given one, oldest first, at most ``limit`` and (with
        ``max_bytes``) as many as fit that many bytes of JSON, at least one."""
        return self._read(
            select(LocalRoomEventRow.seq, LocalRoomEventRow.event)
            .where(LocalRoomEventRow.room_id == self.room_id, LocalRoomEventRow.seq > seq)
            .order_by(LocalRoomEventRow.seq)
            .limit(limit),
            limit,
            max_bytes,
        )

    def recent(self, limit: int, max_bytes: int | None = None) -> list[tuple[int, Raw]]:
        """The last ``limit`` events, oldest first; with ``max_bytes``, only the newest of them
        that fit that many bytes of JSON (at least one): a page of 60 KB posts stays small."""
        if limit <= 0:
            return []
        newest_first = self._read(
            select(LocalRoomEventRow.seq, LocalRoomEventRow.event)
            .where(LocalRoomEventRow.room_id == self.room_id)
            .order_by(LocalRoomEventRow.seq.desc())
            .limit(limit),
            limit,
            max_bytes,
        )
        return newest_first[::-1]

    def _read(self, query: Any, limit: int, max_bytes: int | None) -> list[tuple[int, Raw]]:
        # In batches: reading stops once the budget is spent, not after the whole limit.
        with self.db.session() as s:
            result = s.execute(query.execution_options(yield_per=50))
            try:
                return within_budget(((int(n), dict(raw)) for n, raw in result), limit, max_bytes)
            finally:
                result.close()

    def event(self, event_id: str) -> Raw | None:
        with self.db.session() as s:
            row = self._row(s, event_id)
            return dict(row.event) if row is not None else None

    # --- waiting -------------------------------------------------------------------------------
    async def wait(self, since_seq: int, timeout: float) -> bool:
        """Wait until an event newer than ``since_seq`` exists; False after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        wakeup = asyncio.Event()
        waiter = (loop, wakeup)
        with self._lock:
            self._waiters.add(waiter)
        try:
            while True:
                # Registered before reading: a post landing between the read and the wait
                # still sets the event, so no wake-up is lost.
                wakeup.clear()
                if await asyncio.to_thread(self.head) > since_seq:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), min(remaining, POLL_SECONDS))
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def _notify(self) -> None:
        # post() runs in worker threads: asyncio events are only touched from their own loop.
        with self._lock:
            waiters = list(self._waiters)
        for loop, wakeup in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(wakeup.set)

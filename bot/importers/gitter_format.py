"""The legacy Gitter room export (see ``bot.importers.past_answers`` for the format): messages
are checked, assembled into threads, and each answered thread becomes one ``PastAnswer``."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.corpus.past_answers import PastAnswer
from bot.importers.archive import (
    MAX_KEY_CHARS,
    MAX_USER_CHARS,
    ImportReport,
    InvalidRecord,
    kind_of,
    optional_time,
)

DEFAULT_GITTER_ROOM_URL = "https://gitter.im/keras-team/keras"
GITTER_SOURCE = "import:gitter"
ESTABLISHED_MAINTAINER = "imported:gitter-maintainer-reply"
ESTABLISHED_FIRST_REPLY = "imported:gitter-first-reply"

SKIP_NO_REPLIES = "thread root without replies"
SKIP_EMPTY_ROOT = "thread root without text"
SKIP_ONLY_ASKER = "no reply by anyone but the asker"
SKIP_ORPHAN = "reply whose root is not in the file"


@dataclass(frozen=True)
class GitterMessage:
    id: str
    text: str
    user: str
    sent: datetime | None
    parent: str | None
    where: str
    position: int


def _user_key(name: str) -> str:
    """``@Alice:gitter.im`` and ``alice`` are the same person."""
    return name.strip().lstrip("@").split(":", 1)[0].casefold()


def _gitter_id(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidRecord(f"missing {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRecord(f"{name!r} must be a string, not {kind_of(value)}")
    text = str(value).strip()
    if not text or any(c.isspace() for c in text):
        raise InvalidRecord(f"{name!r} is empty or contains whitespace")
    return text


def _gitter_user(obj: dict[str, Any]) -> str:
    value = obj.get("fromUser")
    if value is None:
        raise InvalidRecord("missing 'fromUser'")
    if isinstance(value, dict):
        for name in ("username", "displayName"):
            candidate = value.get(name)
            if isinstance(candidate, str) and candidate.strip():
                user = candidate.strip()
                break
        else:
            raise InvalidRecord("'fromUser' has no 'username' or 'displayName' string")
    elif isinstance(value, str) and value.strip():
        user = value.strip()
    else:
        raise InvalidRecord(
            f"'fromUser' must be an object or a non-empty string, not {kind_of(value)}"
        )
    if len(user) > MAX_USER_CHARS:
        raise InvalidRecord(f"'fromUser' name is longer than {MAX_USER_CHARS} characters")
    return user


def parse_gitter_message(obj: object, *, where: str = "", position: int = 0) -> GitterMessage:
    """One Gitter export message; raises ``ValueError`` with the reason."""
    if not isinstance(obj, dict):
        raise InvalidRecord(f"expected a JSON object, got {kind_of(obj)}")
    message_id = _gitter_id(obj, "id", required=True)
    assert message_id is not None
    if "text" not in obj:
        raise InvalidRecord("missing 'text'")
    text = obj["text"]
    if not isinstance(text, str):
        raise InvalidRecord(f"'text' must be a string, not {kind_of(text)}")
    parent = _gitter_id(obj, "parentId", required=False)
    if parent == message_id:
        raise InvalidRecord("'parentId' is the message's own id")
    return GitterMessage(
        id=message_id,
        text=text.strip(),
        user=_gitter_user(obj),
        sent=optional_time(obj, "sent"),
        parent=parent,
        where=where,
        position=position,
    )


def _thread_root(msg: GitterMessage, by_id: dict[str, GitterMessage]) -> GitterMessage | None:
    """Follow ``parentId`` up to a top-level message (None if missing or a loop)."""
    seen = {msg.id}
    current = msg
    while current.parent is not None:
        parent = by_id.get(current.parent)
        if parent is None or parent.id in seen:
            return None
        seen.add(parent.id)
        current = parent
    return current


def _pick_answer(
    root: GitterMessage, replies: list[GitterMessage], maintainers: Collection[str]
) -> tuple[GitterMessage, str] | None:
    asker = _user_key(root.user)
    others = [r for r in replies if r.text and _user_key(r.user) != asker]
    if maintainers:
        for reply in others:
            if _user_key(reply.user) in maintainers:
                return reply, ESTABLISHED_MAINTAINER
    if others:
        return others[0], ESTABLISHED_FIRST_REPLY
    return None


def gitter_threads(
    items: Iterable[tuple[str, object]],
    report: ImportReport,
    *,
    room_url_base: str = DEFAULT_GITTER_ROOM_URL,
    maintainers: Iterable[str] = (),
) -> Iterator[PastAnswer]:
    """Question/answer pairs from (where, message) items; problems and skips go to ``report``."""
    base = room_url_base.rstrip("/")
    wanted = {_user_key(m) for m in maintainers if m.strip()}
    by_id = _messages_by_id(items, report)
    threads = _replies_by_root(by_id, report)
    for root in by_id.values():
        if root.parent is not None:
            continue
        replies = threads.get(root.id)
        if not replies:
            report.skip(SKIP_NO_REPLIES)
            continue
        if not root.text:
            report.skip(SKIP_EMPTY_ROOT)
            continue
        replies.sort(
            key=lambda m: (m.sent is None, m.sent.timestamp() if m.sent else 0.0, m.position)
        )
        picked = _pick_answer(root, replies, wanted)
        if picked is None:
            report.skip(SKIP_ONLY_ASKER)
            continue
        answer, rule = picked
        url = f"{base}?at={root.id}"
        if len(url) > MAX_KEY_CHARS:
            report.problem(root.where, f"thread URL is longer than {MAX_KEY_CHARS} characters")
            continue
        yield PastAnswer(
            key=url,
            question=root.text,
            answer=answer.text,
            url=url,
            asked_by=root.user,
            answered_by=answer.user,
            created_at=root.sent,
            source=GITTER_SOURCE,
            established_by=rule,
        )


def _messages_by_id(
    items: Iterable[tuple[str, object]], report: ImportReport
) -> dict[str, GitterMessage]:
    """The valid messages in file order; a repeated id keeps the first one."""
    by_id: dict[str, GitterMessage] = {}
    for position, (where, obj) in enumerate(items):
        try:
            msg = parse_gitter_message(obj, where=where, position=position)
        except InvalidRecord as exc:
            report.problem(where, str(exc))
            continue
        if msg.id in by_id:
            report.problem(where, f"message id repeats {by_id[msg.id].where}; skipped")
            continue
        by_id[msg.id] = msg
    return by_id


def _replies_by_root(
    by_id: dict[str, GitterMessage], report: ImportReport
) -> dict[str, list[GitterMessage]]:
    """Every reply under its top-level root (nested replies too); orphans are skipped."""
    threads: dict[str, list[GitterMessage]] = {}
    for msg in by_id.values():
        if msg.parent is None:
            continue
        root = _thread_root(msg, by_id)
        if root is None:
            report.skip(SKIP_ORPHAN)
            continue
        threads.setdefault(root.id, []).append(msg)
    return threads

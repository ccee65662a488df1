"""What a person may type into the embedded local room, checked before it is stored."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.chat.events import storable_text

# Matrix caps a whole event at 64 KiB; this leaves room for the envelope and the HTML body.
MAX_BODY_BYTES = 60_000


NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")


class LocalRoomInputError(ValueError):
    """Something a person typed into the local room is not acceptable; the text says why."""


def check_name(name: str) -> str:
    """A display name as typed (spaces around it dropped), or ``LocalRoomInputError``."""
    name = name.strip()
    if not name:
        raise LocalRoomInputError("enter a name (letters, digits, '.', '_' or '-')")
    if not NAME_RE.fullmatch(name):
        raise LocalRoomInputError(
            "a name is 1 to 32 characters: letters A-Z, digits, '.', '_' or '-' "
            f"(got {len(name)} characters)"
            if len(name) > 32
            else "a name may contain only letters A-Z, digits, '.', '_' and '-'"
        )
    return name


def check_body(body: str) -> str:
    """The message text with line endings normalised and outer whitespace dropped."""
    text = storable_text(body.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not text:
        raise LocalRoomInputError("the message is empty")
    size = len(text.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise LocalRoomInputError(
            f"the message is too long: {size} bytes, at most {MAX_BODY_BYTES} "
            "(Matrix caps an event at 64 KiB)"
        )
    return text


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0] if user_id.startswith("@") else user_id


def relation(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    content = raw.get("content")
    relates = content.get("m.relates_to") if isinstance(content, Mapping) else None
    return relates if isinstance(relates, Mapping) else {}


def thread_root_of(raw: Mapping[str, Any]) -> str | None:
    """The root event id when ``raw`` is a thread reply, else None: ``events.thread_of`` for a
    raw event dict (the local room keeps the Matrix JSON, unparsed)."""
    relates = relation(raw)
    root = relates.get("event_id")
    return root if relates.get("rel_type") == "m.thread" and isinstance(root, str) else None

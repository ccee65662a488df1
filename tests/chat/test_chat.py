"""bot.chat.events: parse_event on well-formed and hostile event dicts, RoomEvent properties."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.chat.events import (
    CREATOR_LEVEL,
    MAX_CLOCK_AHEAD_MS,
    PowerLevels,
    RoomEvent,
    answered_event_id,
    answered_event_ids,
    checked_origin_ts,
    creators_of,
    parse_event,
    thread_of,
)
from bot.chat.transport import OutgoingReply, SyncBatch

ROOM = "!room:example.org"


def raw_message(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.room.message",
        "event_id": "$question",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": "how do I save a model?"},
    }
    event.update(overrides)
    return event


def test_plain_text_message() -> None:
    event = parse_event(ROOM, raw_message())
    assert event == RoomEvent(
        room_id=ROOM,
        event_id="$question",
        sender="@alice:example.org",
        origin_ts=1_700_000_000_000,
        event_type="m.room.message",
        msgtype="m.text",
        body="how do I save a model?",
    )
    assert event.origin == "live"
    assert event.thread_root == "$question"  # top level: the message is its own root
    assert not event.is_edit


def test_origin_is_passed_through() -> None:
    for origin in ("live", "gap", "history"):
        event = parse_event(ROOM, raw_message(), origin=origin)
        assert event is not None and event.origin == origin


def test_full_content_is_parsed() -> None:
    raw = raw_message(
        content={
            "msgtype": "m.text",
            "body": "keras-bot: how?",
            "format": "org.matrix.custom.html",
            "formatted_body": '<a href="https://matrix.to/#/@keras-bot:example.org">bot</a> how?',
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": "$root",
                "m.in_reply_to": {"event_id": "$previous"},
            },
            "m.mentions": {"user_ids": ["@keras-bot:example.org", "@bob:example.org"]},
        }
    )
    event = parse_event(ROOM, raw)
    assert event is not None
    assert event.formatted_body is not None and "matrix.to" in event.formatted_body
    assert event.rel_type == "m.thread"
    assert event.relates_to == "$root"
    assert event.in_reply_to == "$previous"
    assert event.mentions == ("@keras-bot:example.org", "@bob:example.org")
    assert event.thread_root == "$root"
    assert not event.is_edit


def test_formatted_body_needs_a_format() -> None:
    raw = raw_message(content={"msgtype": "m.text", "body": "x", "formatted_body": "<b>x</b>"})
    event = parse_event(ROOM, raw)
    assert event is not None and event.formatted_body is None


def test_edit_is_flagged() -> None:
    raw = raw_message(
        content={
            "msgtype": "m.text",
            "body": " * how do I save a model?",
            "m.new_content": {"msgtype": "m.text", "body": "how do I save a model?"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"},
        }
    )
    event = parse_event(ROOM, raw)
    assert event is not None
    assert event.is_edit
    assert event.relates_to == "$original"
    assert event.thread_root == event.event_id  # an edit is not a thread


def test_an_edit_carries_the_new_contents_html_not_the_fallbacks() -> None:
    def edit(new_content: dict[str, Any]) -> RoomEvent:
        raw = raw_message(
            content={
                "msgtype": "m.text",
                "body": " * fit fails",
                "format": "org.matrix.custom.html",
                "formatted_body": " * fit fails",
                "m.new_content": new_content,
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$original"},
            }
        )
        event = parse_event(ROOM, raw)
        assert event is not None
        return event

    html = "fit fails:<pre><code>Traceback ...</code></pre>"
    with_html = edit(
        {
            "msgtype": "m.text",
            "body": "fit fails:\n```\nTraceback ...\n```",
            "format": "org.matrix.custom.html",
            "formatted_body": html,
        }
    )
    assert (with_html.body, with_html.formatted_body) == (
        "fit fails:\n```\nTraceback ...\n```",
        html,
    )
    plain = edit({"msgtype": "m.text", "body": "fit fails with keras 3.4"})
    assert (plain.body, plain.formatted_body) == ("fit fails with keras 3.4", None)


def test_thread_root_variants() -> None:
    def with_relation(relates: Any) -> RoomEvent:
        event = parse_event(
            ROOM, raw_message(content={"msgtype": "m.text", "body": "x", "m.relates_to": relates})
        )
        assert event is not None
        return event

    assert with_relation({"rel_type": "m.thread", "event_id": "$root"}).thread_root == "$root"
    # A plain reply (no thread) is its own root.
    reply = with_relation({"m.in_reply_to": {"event_id": "$other"}})
    assert reply.thread_root == "$question"
    assert reply.in_reply_to == "$other"
    # m.thread without a usable event id falls back to the message itself.
    assert with_relation({"rel_type": "m.thread"}).thread_root == "$question"
    assert with_relation({"rel_type": "m.thread", "event_id": 7}).thread_root == "$question"
    # Another relation type pointing somewhere is not a thread.
    annotation = with_relation({"rel_type": "m.annotation", "event_id": "$x", "key": "👍"})
    assert annotation.thread_root == "$question"


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "m.room.member", "event_id": "$m", "sender": "@a:b", "content": {}},
        {"type": "m.reaction", "event_id": "$r", "sender": "@a:b", "content": {}},
        {"type": "m.room.redaction", "event_id": "$r", "sender": "@a:b"},
        {"type": None, "event_id": "$n", "sender": "@a:b"},
        {"event_id": "$n", "sender": "@a:b", "content": {"body": "hi"}},
        {},
    ],
    ids=["member", "reaction-no-target", "redaction-no-target", "type-none", "no-type", "empty"],
)
def test_non_message_events_are_none(raw: dict[str, Any]) -> None:
    assert parse_event(ROOM, raw) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": None},
        {"event_id": 12},
        {"event_id": ["$x"]},
        {"sender": None},
        {"sender": {"user": "@a:b"}},
    ],
)
def test_missing_or_wrong_typed_ids_are_none(overrides: dict[str, Any]) -> None:
    assert parse_event(ROOM, raw_message(**overrides)) is None


def test_missing_id_fields_are_none() -> None:
    raw = raw_message()
    del raw["event_id"]
    assert parse_event(ROOM, raw) is None
    raw = raw_message()
    del raw["sender"]
    assert parse_event(ROOM, raw) is None


@pytest.mark.parametrize("content", [None, "body", 42, ["m.text"], True])
def test_wrong_typed_content_gives_an_empty_message(content: Any) -> None:
    event = parse_event(ROOM, raw_message(content=content))
    assert event is not None
    assert event.body == ""
    assert event.msgtype is None
    assert event.formatted_body is None
    assert event.mentions == ()
    assert event.rel_type is None and event.relates_to is None and event.in_reply_to is None


def test_missing_content_gives_an_empty_message() -> None:
    raw = raw_message()
    del raw["content"]
    event = parse_event(ROOM, raw)
    assert event is not None and event.body == "" and event.msgtype is None


@pytest.mark.parametrize("body", [None, 3, 1.5, ["how?"], {"text": "how?"}, b"how?"])
def test_body_not_a_string(body: Any) -> None:
    event = parse_event(ROOM, raw_message(content={"msgtype": "m.text", "body": body}))
    assert event is not None and event.body == ""


@pytest.mark.parametrize("msgtype", [None, 1, ["m.text"], {"x": 1}])
def test_msgtype_not_a_string(msgtype: Any) -> None:
    event = parse_event(ROOM, raw_message(content={"msgtype": msgtype, "body": "x"}))
    assert event is not None and event.msgtype is None


@pytest.mark.parametrize("formatted", [None, 5, ["<b>x</b>"], {"html": "x"}])
def test_formatted_body_not_a_string(formatted: Any) -> None:
    content = {"msgtype": "m.text", "body": "x", "format": "html", "formatted_body": formatted}
    event = parse_event(ROOM, raw_message(content=content))
    assert event is not None and event.formatted_body is None


@pytest.mark.parametrize(
    ("mentions", "expected"),
    [
        (None, ()),
        ("@keras-bot:example.org", ()),
        (["@keras-bot:example.org"], ()),  # must be an object with user_ids
        ({"user_ids": "@keras-bot:example.org"}, ()),  # not a list: not iterated char by char
        ({"user_ids": {"@keras-bot:example.org": True}}, ()),
        ({"user_ids": None}, ()),
        ({"room": True}, ()),
        ({"user_ids": ["@a:b", 3, None, ["@c:d"], "@e:f"]}, ("@a:b", "@e:f")),
    ],
)
def test_mentions_garbage(mentions: Any, expected: tuple[str, ...]) -> None:
    content = {"msgtype": "m.text", "body": "x", "m.mentions": mentions}
    event = parse_event(ROOM, raw_message(content=content))
    assert event is not None and event.mentions == expected


@pytest.mark.parametrize(
    "relates",
    [
        None,
        "m.thread",
        ["m.thread", "$root"],
        42,
        {"rel_type": 5, "event_id": ["$root"]},
        {"rel_type": None, "event_id": None, "m.in_reply_to": "$x"},
        {"m.in_reply_to": ["$x"]},
        {"m.in_reply_to": {"event_id": 9}},
        {"m.in_reply_to": {}},
    ],
)
def test_relates_to_garbage(relates: Any) -> None:
    content = {"msgtype": "m.text", "body": "x", "m.relates_to": relates}
    event = parse_event(ROOM, raw_message(content=content))
    assert event is not None
    assert event.rel_type is None
    assert event.relates_to is None
    assert event.in_reply_to is None
    assert event.thread_root == event.event_id
    assert not event.is_edit


@pytest.mark.parametrize(
    "ts",
    [None, "1700000000000", 1.7e12, [1], True, -1, 2**53 - 1, 2**63, -(2**63)],
)
def test_origin_ts_not_a_plausible_int_is_the_receive_time(ts: Any) -> None:
    before = int(time.time() * 1000)
    event = parse_event(ROOM, raw_message(origin_server_ts=ts))
    after = int(time.time() * 1000)
    assert event is not None and before <= event.origin_ts <= after


def test_origin_ts_missing_is_the_receive_time() -> None:
    raw = raw_message()
    del raw["origin_server_ts"]
    before = int(time.time() * 1000)
    event = parse_event(ROOM, raw)
    assert event is not None and before <= event.origin_ts <= int(time.time() * 1000)


def test_origin_ts_from_1970_to_a_day_ahead_is_kept() -> None:
    now = 1_800_000_000_000
    for ts in (0, 1_700_000_000_000, now + MAX_CLOCK_AHEAD_MS):
        assert checked_origin_ts(ts, received_ms=now) == ts
    assert checked_origin_ts(now + MAX_CLOCK_AHEAD_MS + 1, received_ms=now) == now
    assert checked_origin_ts(-1, received_ms=now) == now


def test_parsed_event_is_immutable_and_hashable() -> None:
    event = parse_event(ROOM, raw_message())
    assert event is not None
    with pytest.raises(AttributeError):
        event.body = "changed"  # type: ignore[misc]
    assert len({event, parse_event(ROOM, raw_message())}) == 1


def test_sync_batch_and_outgoing_reply_defaults() -> None:
    assert tuple(SyncBatch(next_token="s1").events) == ()
    reply = OutgoingReply(
        room_id=ROOM,
        reply_to="$q",
        thread_root="$q",
        body="b",
        formatted_body="<p>b</p>",
        txn_id="t",
    )
    assert reply.mention is None


def test_reactions_redactions_and_edits() -> None:
    reaction = parse_event(
        "!r",
        {
            "type": "m.reaction",
            "event_id": "$re",
            "sender": "@a:b",
            "origin_server_ts": 5,
            "content": {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": "$t", "key": "👍"}
            },
        },
    )
    assert reaction is not None
    assert (reaction.event_type, reaction.body, reaction.relates_to) == ("m.reaction", "👍", "$t")
    old = parse_event(
        "!r", {"type": "m.room.redaction", "event_id": "$d", "sender": "@a:b", "redacts": "$t"}
    )
    new = parse_event(
        "!r",
        {
            "type": "m.room.redaction",
            "event_id": "$d",
            "sender": "@a:b",
            "content": {"redacts": "$t"},
        },
    )
    assert old is not None and new is not None
    assert old.relates_to == new.relates_to == "$t"
    edit = parse_event(
        "!r",
        {
            "type": "m.room.message",
            "event_id": "$e",
            "sender": "@a:b",
            "content": {
                "msgtype": "m.text",
                "body": "* fixed text",
                "m.new_content": {"msgtype": "m.text", "body": "fixed text"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$t"},
            },
        },
    )
    assert edit is not None and edit.is_edit and edit.body == "fixed text"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, PowerLevels()),
        ([], PowerLevels()),
        ({"users": {"@a:x": 100, "@b:x": 50.0}}, PowerLevels(users={"@a:x": 100, "@b:x": 50})),
        (
            {"users": {"@a:x": True, "@b:x": "100", "@c:x": 2**60, 7: 1}, "users_default": "5"},
            PowerLevels(),
        ),
        ({"users": [], "redact": 0, "users_default": -1}, PowerLevels(users_default=-1, redact=0)),
        ({"redact": float("nan")}, PowerLevels()),
    ],
)
def test_power_levels_from_any_content(content: object, expected: PowerLevels) -> None:
    assert PowerLevels.from_content(content) == expected


def test_room_creators_outrank_everyone_from_room_version_12() -> None:
    v12 = {"sender": "@c:x", "content": {"room_version": "12", "additional_creators": ["@d:x"]}}
    assert creators_of(v12) == {"@c:x", "@d:x"}
    assert creators_of({"sender": "@c:x", "content": {"room_version": "10"}}) == frozenset()
    assert creators_of({"sender": "@c:x", "content": {}}) == frozenset()  # version 1
    assert creators_of({"sender": "@c:x", "content": "junk"}) == frozenset()
    levels = PowerLevels.from_content({"users": {"@c:x": 0}}, creators_of(v12))
    assert levels.of("@c:x") == levels.of("@d:x") == CREATOR_LEVEL and levels.of("@e:x") == 0


def test_what_a_message_answers_thread_root_then_reply() -> None:
    def event(**relations: Any) -> RoomEvent:
        return RoomEvent(
            ROOM, "$m", "@bob:example.org", 0, "m.room.message", "m.text", "x", **relations
        )

    in_thread = event(rel_type="m.thread", relates_to="$root", in_reply_to="$q")
    assert answered_event_id(in_thread) == "$root"
    assert answered_event_ids(in_thread) == ("$root", "$q")
    fallback = event(rel_type="m.thread", relates_to="$root", in_reply_to="$root")
    assert answered_event_ids(fallback) == ("$root",)
    reply = event(in_reply_to="$q")
    assert answered_event_id(reply) == "$q" and answered_event_ids(reply) == ("$q",)
    assert reply.thread_root == "$m" and in_thread.thread_root == "$root"
    edit = event(rel_type="m.replace", relates_to="$old")
    assert answered_event_id(edit) is None and answered_event_ids(edit) == ()
    assert thread_of(edit) is None and thread_of(in_thread) == "$root"

"""bot.gitter_client: nio error responses mapped to the error tree; the token never leaks.

nio's response classes are built through their real constructors; only the aiohttp response
that nio attaches (``transport_response``, of which only ``.status`` is read) is a stand-in.
The network side is covered end to end against a real Synapse in tests/room/test_room_service.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import nio
import pytest

from bot.chat.transport import OutgoingReply
from bot.errors import FatalError, SupportBotError, TransientError
from bot.gitter_client import (
    MatrixAuthError,
    MatrixForbiddenError,
    MatrixTransport,
    MessageRejectedError,
    _sync_filter,
    raise_for_error,
)

TOKEN = "syt_c2VjcmV0_TOPSECRETtokenvalue_1a2b3c"
USER = "@keras-bot:gitter.im"


@dataclass
class HttpResponse:
    """What raise_for_error reads of the aiohttp response nio attaches."""

    status: int


def error(
    cls: type[nio.ErrorResponse],
    errcode: str | None,
    status: int | None,
    message: str = "something went wrong",
    retry_after_ms: int | None = None,
) -> nio.ErrorResponse:
    resp = cls(message, status_code=errcode, retry_after_ms=retry_after_ms)
    if status is not None:
        resp.transport_response = HttpResponse(status)
    return resp


# --- error mapping -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "errcode", "status"),
    [
        (nio.SyncError, "M_UNKNOWN_TOKEN", 401),
        (nio.WhoamiError, "M_UNKNOWN_TOKEN", 401),
        (nio.WhoamiError, "M_MISSING_TOKEN", 401),
        (nio.RoomSendError, "M_UNKNOWN_TOKEN", None),
        (nio.JoinError, None, 401),  # no errcode: the HTTP status alone
        (nio.SyncError, "M_UNKNOWN", 401),
    ],
)
def test_auth_errors(cls: type[nio.ErrorResponse], errcode: str | None, status: int | None) -> None:
    with pytest.raises(MatrixAuthError, match="rejected the access token") as info:
        raise_for_error(error(cls, errcode, status), "whoami")
    assert isinstance(info.value, FatalError)


@pytest.mark.parametrize("fatal", [True, False])
def test_auth_errors_are_fatal_even_when_forbidden_is_not(fatal: bool) -> None:
    with pytest.raises(MatrixAuthError):
        raise_for_error(error(nio.SyncError, "M_UNKNOWN_TOKEN", 401), "sync", fatal_forbidden=fatal)


@pytest.mark.parametrize("cls", [nio.JoinError, nio.RoomSendError, nio.RoomResolveAliasError])
def test_forbidden_is_fatal_by_default(cls: type[nio.ErrorResponse]) -> None:
    resp = error(cls, "M_FORBIDDEN", 403, "You are not invited to this room.")
    with pytest.raises(MatrixForbiddenError, match="join !r:x: M_FORBIDDEN You are not invited"):
        raise_for_error(resp, "join !r:x")


def test_forbidden_not_fatal_is_rejected() -> None:
    resp = error(nio.SyncError, "M_FORBIDDEN", 403)
    with pytest.raises(MessageRejectedError) as info:
        raise_for_error(resp, "sync", fatal_forbidden=False)
    assert not isinstance(info.value, FatalError)
    assert not isinstance(info.value, TransientError)


@pytest.mark.parametrize(
    ("cls", "errcode", "status", "retry_after_ms"),
    [
        (nio.RoomSendError, "M_LIMIT_EXCEEDED", 429, 2000),
        (nio.SyncError, "M_LIMIT_EXCEEDED", None, None),
        (nio.RoomSendError, None, 429, None),
        (nio.SyncError, None, 500, None),
        (nio.SyncError, "M_UNKNOWN", 502, None),
        (nio.RoomSendError, None, 503, None),
        (nio.JoinError, None, 504, None),
        (nio.SyncError, None, None, None),  # no HTTP status at all: connection-level failure
        (nio.RoomSendError, "M_UNKNOWN", None, None),
    ],
)
def test_transient_errors(
    cls: type[nio.ErrorResponse],
    errcode: str | None,
    status: int | None,
    retry_after_ms: int | None,
) -> None:
    resp = error(cls, errcode, status, retry_after_ms=retry_after_ms)
    with pytest.raises(TransientError):
        raise_for_error(resp, "send")


@pytest.mark.parametrize(
    ("errcode", "status"),
    [
        ("M_TOO_LARGE", 413),
        ("M_BAD_JSON", 400),
        ("M_NOT_JSON", 400),
        (None, 400),
        (None, 404),
        (None, 403),  # 403 without M_FORBIDDEN is not the fatal kind
    ],
)
def test_rejected_message(errcode: str | None, status: int) -> None:
    resp = error(nio.RoomSendError, errcode, status, "event too large")
    with pytest.raises(MessageRejectedError) as info:
        raise_for_error(resp, "send to !r:x")
    assert isinstance(info.value, SupportBotError)
    assert not isinstance(info.value, (FatalError, TransientError))
    assert str(info.value).startswith("send to !r:x: ")


def test_detail_names_http_status_without_errcode() -> None:
    with pytest.raises(MessageRejectedError, match=r"^send: HTTP 404"):
        raise_for_error(error(nio.RoomSendError, None, 404, ""), "send")


@pytest.mark.parametrize(
    "resp",
    [
        nio.SyncResponse(
            "s2",
            nio.Rooms({}, {}, {}),
            nio.DeviceOneTimeKeyCount(None, None),
            nio.DeviceList([], []),
            [],
            [],
        ),
        nio.RoomSendResponse("$event", "!room:x"),
        nio.WhoamiResponse(USER, "DEVICE", False),
        nio.JoinResponse("!room:x"),
        None,
        "not a response",
    ],
    ids=["sync", "send", "whoami", "join", "none", "str"],
)
def test_success_does_not_raise(resp: Any) -> None:
    raise_for_error(resp, "anything")


def test_error_messages_do_not_contain_the_token() -> None:
    # The homeserver's message is echoed; the token is not something raise_for_error knows.
    cases = [
        error(nio.WhoamiError, "M_UNKNOWN_TOKEN", 401, "Invalid access token passed."),
        error(nio.JoinError, "M_FORBIDDEN", 403),
        error(nio.RoomSendError, "M_TOO_LARGE", 413),
        error(nio.SyncError, None, 502),
    ]
    for resp in cases:
        with pytest.raises(SupportBotError) as info:
            raise_for_error(resp, "action")
        assert TOKEN not in str(info.value)
        assert TOKEN not in repr(info.value)


# --- the transport -------------------------------------------------------------------------------
def transport() -> MatrixTransport:
    return MatrixTransport("https://gitter.im/", USER, TOKEN, ["#keras-team/keras:gitter.im"])


def test_repr_hides_the_token() -> None:
    t = transport()
    assert TOKEN not in repr(t)
    assert TOKEN not in str(t)
    assert repr(t) == "MatrixTransport('https://gitter.im', '@keras-bot:gitter.im')"


def test_client_before_connect_raises() -> None:
    with pytest.raises(RuntimeError, match="not connected"):
        _ = transport().client


def test_sync_filter() -> None:
    f = _sync_filter(["!a:x", "!b:y"], 25)
    assert f["room"]["rooms"] == ["!a:x", "!b:y"]
    assert f["room"]["timeline"] == {
        "limit": 25,
        "types": ["m.room.message", "m.reaction", "m.room.redaction", "m.room.power_levels"],
    }
    assert f["room"]["state"] == {"lazy_load_members": True, "types": ["m.room.power_levels"]}
    for section in (f["presence"], f["account_data"], f["room"]["ephemeral"]):
        assert section == {"not_types": ["*"]}
    assert f["room"]["account_data"] == {"not_types": ["*"]}


class FakeNioClient:
    """Stands in for nio.AsyncClient in send_reply/sync: records calls, replays responses."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.closed = False

    async def _next(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, args, kwargs))
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    async def room_send(self, *args: Any, **kwargs: Any) -> Any:
        return await self._next("room_send", *args, **kwargs)

    async def sync(self, *args: Any, **kwargs: Any) -> Any:
        return await self._next("sync", *args, **kwargs)

    async def room_messages(self, *args: Any, **kwargs: Any) -> Any:
        return await self._next("room_messages", *args, **kwargs)

    async def close(self) -> None:
        self.closed = True


REPLY = OutgoingReply(
    room_id="!room:gitter.im",
    reply_to="$question",
    thread_root="$root",
    body="See **fit**",
    formatted_body="<p>See <strong>fit</strong></p>",
    txn_id="supportbot-abc",
    mention="@alice:gitter.im",
)


def connected(client: FakeNioClient) -> MatrixTransport:
    t = transport()
    t._client = client
    t.room_ids = ["!room:gitter.im"]
    return t


def test_send_reply_content() -> None:
    client = FakeNioClient(nio.RoomSendResponse("$reply", "!room:gitter.im"))
    assert asyncio.run(connected(client).send_reply(REPLY)) == "$reply"
    [(name, args, kwargs)] = client.calls
    assert name == "room_send"
    room_id, event_type, content = args
    assert room_id == "!room:gitter.im" and event_type == "m.room.message"
    assert kwargs == {"tx_id": "supportbot-abc"}
    assert content == {
        "msgtype": "m.notice",
        "body": "See **fit**",
        "format": "org.matrix.custom.html",
        "formatted_body": "<p>See <strong>fit</strong></p>",
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": "$root",
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": "$question"},
        },
        "m.mentions": {"user_ids": ["@alice:gitter.im"]},
    }


def test_send_reply_without_mention_mentions_nobody() -> None:
    client = FakeNioClient(nio.RoomSendResponse("$reply", "!room:gitter.im"))
    reply = OutgoingReply(**{**REPLY.__dict__, "mention": None})
    asyncio.run(connected(client).send_reply(reply))
    assert client.calls[0][1][2]["m.mentions"] == {}


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectionError("connection reset"),
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
        ConnectionRefusedError(111, "refused"),
    ],
)
def test_send_network_errors_are_transient(exc: BaseException) -> None:
    client = FakeNioClient(exc)
    with pytest.raises(TransientError, match="send failed") as info:
        asyncio.run(connected(client).send_reply(REPLY))
    assert TOKEN not in str(info.value)


def test_send_errors_are_mapped() -> None:
    too_large = error(nio.RoomSendError, "M_TOO_LARGE", 413)
    with pytest.raises(MessageRejectedError):
        asyncio.run(connected(FakeNioClient(too_large)).send_reply(REPLY))
    forbidden = error(nio.RoomSendError, "M_FORBIDDEN", 403)
    with pytest.raises(MatrixForbiddenError):
        asyncio.run(connected(FakeNioClient(forbidden)).send_reply(REPLY))
    slow_down = error(nio.RoomSendError, "M_LIMIT_EXCEEDED", 429, retry_after_ms=100)
    with pytest.raises(TransientError):
        asyncio.run(connected(FakeNioClient(slow_down)).send_reply(REPLY))


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        (error(nio.SyncError, "M_FORBIDDEN", 403), TransientError),  # never fatal on sync
        (error(nio.SyncError, "M_BAD_JSON", 400), TransientError),
        (error(nio.SyncError, None, 502), TransientError),
        (error(nio.SyncError, "M_UNKNOWN_TOKEN", 401), MatrixAuthError),
        (aiohttp.ClientPayloadError("truncated"), TransientError),
        (TimeoutError(), TransientError),
    ],
)
def test_sync_errors(resp: Any, expected: type[Exception]) -> None:
    client = FakeNioClient(resp)
    with pytest.raises(expected) as info:
        asyncio.run(connected(client).sync("s1"))
    assert TOKEN not in str(info.value)
    [(_, _, kwargs)] = client.calls
    assert kwargs["since"] == "s1"
    assert kwargs["sync_filter"]["room"]["rooms"] == ["!room:gitter.im"]


def test_close_is_idempotent() -> None:
    client = FakeNioClient()
    t = connected(client)
    asyncio.run(t.close())
    assert client.closed
    asyncio.run(t.close())
    with pytest.raises(RuntimeError):
        _ = t.client


# --- sync responses ------------------------------------------------------------------------------
def nio_event(event_id: str, body: str = "hi", ts: int = 1, type_: str = "m.room.message") -> Any:
    raw: dict[str, Any] = {
        "type": type_,
        "event_id": event_id,
        "sender": "@alice:gitter.im",
        "origin_server_ts": ts,
        "content": {"msgtype": "m.text", "body": body},
    }
    if type_ == "m.room.member":
        raw["state_key"] = "@alice:gitter.im"
        raw["content"] = {"membership": "join"}
    return nio.Event.parse_event(raw)


def sync_response(
    join: dict[str, tuple[list[Any], bool, str | None]], leave: tuple[str, ...] = ()
) -> nio.SyncResponse:
    def info(events: list[Any], limited: bool, prev: str | None) -> nio.RoomInfo:
        return nio.RoomInfo(nio.Timeline(events, limited, prev), [], [], [])

    return nio.SyncResponse(
        "s-next",
        nio.Rooms(
            {},
            {room: info(*timeline) for room, timeline in join.items()},
            {room: info([], False, None) for room in leave},
        ),
        nio.DeviceOneTimeKeyCount(None, None),
        nio.DeviceList([], []),
        [],
        [],
    )


def test_first_sync_is_history_trimmed_to_depth() -> None:
    events = [nio_event(f"$h{i}", ts=i) for i in range(5)]
    events.insert(4, nio_event("$member", type_="m.room.member"))
    resp = sync_response(
        {
            "!room:gitter.im": (events, True, "p0"),
            "!other:gitter.im": ([nio_event("$o")], False, None),
        }
    )
    client = FakeNioClient(resp)
    t = connected(client)
    t.history_depth = 3
    batch = asyncio.run(t.sync(None))
    assert batch.next_token == "s-next"
    # The last three timeline events, of which one is not a message; no back-fill on first sync.
    assert [e.event_id for e in batch.events] == ["$h3", "$h4"]
    assert all(e.origin == "history" for e in batch.events)
    [(name, _, kwargs)] = client.calls
    assert name == "sync" and kwargs["timeout"] == 0 and kwargs["since"] is None
    assert kwargs["sync_filter"]["room"]["timeline"]["limit"] == 3


def test_first_sync_with_zero_history_depth() -> None:
    resp = sync_response({"!room:gitter.im": ([nio_event("$h")], False, None)})
    t = connected(FakeNioClient(resp))
    t.history_depth = 0
    batch = asyncio.run(t.sync(None))
    assert tuple(batch.events) == ()


def test_live_sync_with_gap_back_fill() -> None:
    live = sync_response({"!room:gitter.im": ([nio_event("$l1", ts=10)], True, "prev")})
    # /messages pages go backwards: newest first.
    page1 = nio.RoomMessagesResponse(
        "!room:gitter.im", [nio_event("$g3", ts=3), nio_event("$g2", ts=2)], "prev", "t1"
    )
    page2 = nio.RoomMessagesResponse("!room:gitter.im", [nio_event("$g1", ts=1)], "t1", "t2")
    done = nio.RoomMessagesResponse("!room:gitter.im", [], "t2", "t2")
    client = FakeNioClient(live, page1, page2, done)
    t = connected(client)
    batch = asyncio.run(t.sync("s1"))
    assert [(e.event_id, e.origin) for e in batch.events] == [
        ("$g1", "gap"),
        ("$g2", "gap"),
        ("$g3", "gap"),
        ("$l1", "live"),
    ]
    assert [c[0] for c in client.calls] == [
        "sync",
        "room_messages",
        "room_messages",
        "room_messages",
    ]
    assert client.calls[0][2]["timeout"] == t.sync_timeout_ms
    assert client.calls[1][2]["start"] == "prev" and client.calls[1][2]["end"] == "s1"
    assert client.calls[2][2]["start"] == "t1"


def test_back_fill_error_is_transient() -> None:
    live = sync_response({"!room:gitter.im": ([nio_event("$l1")], True, "prev")})
    failed = error(nio.RoomMessagesError, "M_FORBIDDEN", 403)
    with pytest.raises(TransientError):
        asyncio.run(connected(FakeNioClient(live, failed)).sync("s1"))


def test_left_room_is_fatal() -> None:
    resp = sync_response({}, leave=("!room:gitter.im",))
    with pytest.raises(MatrixForbiddenError, match="no longer in room"):
        asyncio.run(connected(FakeNioClient(resp)).sync("s1"))
    # Leaving a room the bot was not configured for is not an error.
    other = sync_response({}, leave=("!elsewhere:gitter.im",))
    assert tuple(asyncio.run(connected(FakeNioClient(other)).sync("s1")).events) == ()

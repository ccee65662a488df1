"""Matrix client-server transport with Gitter defaults (Gitter is a Matrix homeserver).

Built on matrix-nio's ``AsyncClient`` (aiohttp underneath). This module is the only place that
talks to the homeserver; it turns nio's responses into the neutral types of ``bot.chat.events`` and
its failures into the project's error tree:

* ``M_UNKNOWN_TOKEN`` / ``M_MISSING_TOKEN``  → :class:`MatrixAuthError` (fatal: stop)
* ``M_FORBIDDEN`` joining or sending        → :class:`MatrixForbiddenError` (fatal)
* network errors, timeouts, 5xx, repeated 429 → :class:`TransientError` (caller backs off)
* anything else on a send                   → :class:`MessageRejectedError` (that message only)

HTTP 429 with ``retry_after_ms`` is waited out inside nio (up to ``max_limit_exceeded``
times per request). The access token travels only in the Authorization header (nio strips
it from query strings) and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DiscoveryInfoResponse,
    ErrorResponse,
    JoinResponse,
    MessageDirection,
    ProfileGetDisplayNameResponse,
    RoomGetStateResponse,
    RoomMessagesResponse,
    RoomResolveAliasResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiResponse,
)

from bot.chat.events import PowerLevels, RoomEvent, creators_of, parse_event
from bot.chat.transport import OutgoingReply, SyncBatch
from bot.errors import FatalError, MessageRejectedError, RoomForbiddenError, TransientError

log = logging.getLogger(__name__)

GITTER_HOMESERVER = "https://gitter.im"
# Messages to answer; reactions and redactions to learn which answers were accepted or removed.
TIMELINE_TYPES = ("m.room.message", "m.reaction", "m.room.redaction")
POWER_LEVELS = "m.room.power_levels"
# Pages of /messages fetched to fill one gap; beyond this the rest is logged as skipped.
_MAX_GAP_PAGES = 50
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)


class MatrixAuthError(FatalError):
    """The homeserver rejected the access token."""


class MatrixForbiddenError(RoomForbiddenError):
    """The bot may not join or speak in a configured room."""


def _errcode(resp: ErrorResponse) -> str:
    return str(resp.status_code or "")


def _http_status(resp: Any) -> int | None:
    transport = getattr(resp, "transport_response", None)
    return getattr(transport, "status", None)


def raise_for_error(resp: Any, action: str, *, fatal_forbidden: bool = True) -> None:
    """Map an nio error response to the error tree (no-op for a success response)."""
    if not isinstance(resp, ErrorResponse):
        return
    code = _errcode(resp)
    status = _http_status(resp)
    detail = f"{action}: {code or 'HTTP ' + str(status)} {resp.message or ''}".strip()
    if code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN") or status == 401:
        raise MatrixAuthError(f"the homeserver rejected the access token ({detail})")
    if code == "M_FORBIDDEN" and fatal_forbidden:
        raise MatrixForbiddenError(detail)
    if code == "M_LIMIT_EXCEEDED" or status is None or status == 429 or status >= 500:
        raise TransientError(detail)
    raise MessageRejectedError(detail)


def _sync_filter(room_ids: list[str], timeline_limit: int) -> dict[str, Any]:
    nothing = {"not_types": ["*"]}
    return {
        "presence": nothing,
        "account_data": nothing,
        "room": {
            "rooms": room_ids,
            # Power-level changes too, so trust and moderation follow the room while it runs.
            "timeline": {"limit": timeline_limit, "types": [*TIMELINE_TYPES, POWER_LEVELS]},
            "state": {"lazy_load_members": True, "types": [POWER_LEVELS]},
            "ephemeral": nothing,
            "account_data": nothing,
        },
    }


class MatrixTransport:
    """Connect, iterate events (one /sync long-poll per call), send, close."""

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        access_token: str,
        rooms: list[str],
        *,
        sync_timeout_ms: int = 30_000,
        timeline_limit: int = 50,
        history_depth: int = 20,
        request_timeout: float = 60.0,
        device_id: str = "SUPPORTBOT",
    ) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.device_id = device_id
        self.user_id = user_id
        self._token = access_token
        self._configured_rooms = list(rooms)
        self.room_ids: list[str] = []
        self.display_name: str | None = None
        # Read at connect, then kept current from m.room.power_levels events in the sync.
        self.power_levels: dict[str, PowerLevels] = {}
        self._creators: dict[str, frozenset[str]] = {}
        self.sync_timeout_ms = sync_timeout_ms
        self.timeline_limit = timeline_limit
        self.history_depth = history_depth
        self._config = AsyncClientConfig(
            max_limit_exceeded=20,
            max_timeouts=0,  # our sync loop owns retries: capped backoff with jitter
            request_timeout=request_timeout + sync_timeout_ms / 1000,
            store_sync_tokens=False,
            encryption_enabled=False,
        )
        self._client: AsyncClient | None = None

    def __repr__(self) -> str:  # never show the token
        return f"MatrixTransport({self.homeserver!r}, {self.user_id!r})"

    def _new_client(self, homeserver: str) -> AsyncClient:
        client = AsyncClient(
            homeserver, self.user_id, device_id=self.device_id, config=self._config
        )
        client.access_token = self._token
        client.user_id = self.user_id
        return client

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("transport is not connected")
        return self._client

    async def connect(self) -> None:
        """Check the token, resolve and join the rooms. Safe to call again after a failure."""
        try:
            await self._connect()
        except _NETWORK_ERRORS as exc:
            raise TransientError(f"cannot reach {self.homeserver}: {exc!r}") from exc

    async def _connect(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._new_client(self.homeserver)
        info = await self._client.discovery_info()
        if isinstance(info, DiscoveryInfoResponse) and info.homeserver_url:
            base = info.homeserver_url.rstrip("/")
            if base != self.homeserver:
                log.info("homeserver %s delegates the client API to %s", self.homeserver, base)
                await self._client.close()
                self._client = self._new_client(base)
        who = await self.client.whoami()
        raise_for_error(who, "whoami")
        if isinstance(who, WhoamiResponse) and who.user_id != self.user_id:
            raise MatrixAuthError(
                f"the access token belongs to {who.user_id}, not SUPPORTBOT_MATRIX_USER_ID "
                f"{self.user_id}"
            )
        room_ids = [await self._join(room) for room in self._configured_rooms]
        self.room_ids = room_ids
        for room_id in room_ids:
            state = await self.client.room_get_state(room_id)
            events = state.events if isinstance(state, RoomGetStateResponse) else []
            creates = [
                e for e in events if isinstance(e, dict) and e.get("type") == "m.room.create"
            ]
            self._creators[room_id] = creators_of(creates[0]) if creates else frozenset()
            self.power_levels[room_id] = PowerLevels(creators=self._creators[room_id])
            self._follow_power_levels(room_id, events)
        name = await self.client.get_displayname(self.user_id)
        if isinstance(name, ProfileGetDisplayNameResponse):
            self.display_name = name.displayname
        log.info("connected to %s as %s; rooms %s", self.homeserver, self.user_id, room_ids)

    async def _join(self, room: str) -> str:
        """Resolve ``room`` (an id or an alias) and join it (a no-op when already in it); its
        room id."""
        room_id = room
        if room.startswith("#"):
            resolved = await self.client.room_resolve_alias(room)
            raise_for_error(resolved, f"resolve {room}")
            assert isinstance(resolved, RoomResolveAliasResponse)
            room_id = resolved.room_id
        joined = await self.client.join(room_id)
        raise_for_error(joined, f"join {room}")
        assert isinstance(joined, JoinResponse)
        return str(joined.room_id)

    async def sync(self, since: str | None) -> SyncBatch:
        """One long-poll. The first call (``since=None``) returns recent history, not live."""
        first = since is None
        limit = self.history_depth if first else self.timeline_limit
        try:
            resp = await self.client.sync(
                timeout=0 if first else self.sync_timeout_ms,
                sync_filter=_sync_filter(self.room_ids, max(limit, 1)),
                since=since,
                full_state=False,
            )
            raise_for_error(resp, "sync", fatal_forbidden=False)
            assert isinstance(resp, SyncResponse)
            events: list[RoomEvent] = []
            for room_id, room in resp.rooms.join.items():
                if room_id not in self.room_ids:
                    continue
                timeline = room.timeline
                # The state section holds the room's state before a limited timeline.
                self._follow_power_levels(
                    room_id, [e.source for e in (*room.state, *timeline.events)]
                )
                if timeline.limited and since is not None and timeline.prev_batch:
                    events.extend(await self._backfill(room_id, timeline.prev_batch, since))
                origin = "history" if first else "live"
                raw_events = [e.source for e in timeline.events]
                if first:
                    raw_events = raw_events[-self.history_depth :] if self.history_depth else []
                events.extend(self._parse_all(room_id, raw_events, origin))
            for room_id in resp.rooms.leave:
                if room_id in self.room_ids:
                    raise MatrixForbiddenError(f"the bot is no longer in room {room_id}")
            return SyncBatch(next_token=resp.next_batch, events=tuple(events))
        except MessageRejectedError as exc:
            raise TransientError(str(exc)) from exc
        except _NETWORK_ERRORS as exc:
            raise TransientError(f"sync failed: {exc!r}") from exc

    def _follow_power_levels(self, room_id: str, raw_events: Sequence[object]) -> None:
        """Keep the room's power levels current: the last ``m.room.power_levels`` wins."""
        for raw in raw_events:
            if (
                isinstance(raw, Mapping)
                and raw.get("type") == POWER_LEVELS
                and raw.get("state_key") == ""
            ):
                creators = self._creators.get(room_id, frozenset())
                self.power_levels[room_id] = PowerLevels.from_content(raw.get("content"), creators)

    @staticmethod
    def _parse_all(
        room_id: str, raw_events: list[Mapping[str, Any]], origin: str
    ) -> list[RoomEvent]:
        parsed = (parse_event(room_id, raw, origin=origin) for raw in raw_events)
        return [e for e in parsed if e is not None]

    async def _backfill(self, room_id: str, from_token: str, to_token: str) -> list[RoomEvent]:
        """Messages the server left out of a limited timeline, oldest first."""
        collected: list[Mapping[str, Any]] = []
        token = from_token
        for _ in range(_MAX_GAP_PAGES):
            resp = await self.client.room_messages(
                room_id,
                start=token,
                end=to_token,
                direction=MessageDirection.back,
                limit=100,
                message_filter={"types": list(TIMELINE_TYPES)},
            )
            raise_for_error(resp, f"back-fill {room_id}", fatal_forbidden=False)
            assert isinstance(resp, RoomMessagesResponse)
            collected.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == token:
                break
            token = resp.end
        else:
            log.warning(
                "gap in %s longer than %d pages; older messages skipped", room_id, _MAX_GAP_PAGES
            )
        log.info("back-filled %d events in %s after a limited sync", len(collected), room_id)
        return self._parse_all(room_id, list(reversed(collected)), "gap")

    async def send_reply(self, reply: OutgoingReply) -> str:
        content = reply.content()
        try:
            resp = await self.client.room_send(
                reply.room_id, "m.room.message", content, tx_id=reply.txn_id
            )
        except _NETWORK_ERRORS as exc:
            raise TransientError(f"send failed: {exc!r}") from exc
        raise_for_error(resp, f"send to {reply.room_id}")
        assert isinstance(resp, RoomSendResponse)
        return str(resp.event_id)

    async def post_notice(
        self, room: str, body: str, formatted_body: str, txn_id: str
    ) -> tuple[str, str]:
        """Post a top-level notice to ``room`` (an id or alias), joining it first; for rooms
        the bot does not serve (the maintainers' room), so their events never reach the sync
        filter. Returns (room id, event id)."""
        try:
            room_id = await self._join(room)
            content = {
                "msgtype": "m.notice",
                "body": body,
                "format": "org.matrix.custom.html",
                "formatted_body": formatted_body,
            }
            resp = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn_id)
        except _NETWORK_ERRORS as exc:
            raise TransientError(f"posting to {room} failed: {exc!r}") from exc
        raise_for_error(resp, f"post to {room}")
        assert isinstance(resp, RoomSendResponse)
        return room_id, str(resp.event_id)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

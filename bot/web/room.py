"""The local room's page: read the timeline, post questions, watch the bot answer in threads.

It is the public face of a bot run without a homeserver (bound to 127.0.0.1 by default), so it
needs no sign-in. Posts are protected against cross-site requests with a double-submit token:
a random ``room_csrf`` cookie (SameSite=Strict, HttpOnly) that must equal the form's hidden
``csrf`` field, which another site can neither read nor set. The page works without
JavaScript (form post, redirect back); ``room.js`` adds polling and in-place posting.

User text is only ever autoescaped; the bot's notices are rendered from their Markdown body
with raw HTML disabled, exactly as their ``formatted_body`` was made.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup

from bot.answering.render import markdown_to_html
from bot.chat.local_input import LocalRoomInputError, localpart, relation, thread_root_of
from bot.store.local_room import LocalRoom
from bot.timeutil import utc_from_ms
from bot.web.auth import client_address
from bot.web.context import CTX_KEY
from bot.web.templating import render

STATIC_DIR = Path(__file__).parent / "static"
CSRF_COOKIE = "room_csrf"
NAME_COOKIE = "room_name"
COOKIE_PATH = "/room"
PAGE_EVENTS = 1000  # events read to draw the page; older threads scroll out of it
EVENTS_PER_POLL = 200
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# Defence in depth on top of escaping: only this origin's script and styles, never framed.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # the page carries this browser's form token
}
CSRF_REFUSED = (
    "Refused: this post did not come from the room page (its room_csrf token is missing or "
    "does not match). Reload /room and send it again."
)

Raw = dict[str, Any]
POST_WINDOW_SECONDS = 60.0


class PostLimiter:
    """Posts per key (a client address, a name) in a sliding minute, in this process.

    Each worker process counts its own posts; the local room normally runs in one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, limit: int) -> float:
        """Seconds until ``key`` may post again; 0 when it may post now."""
        with self._lock:
            times = self._window(key, self.clock())
            if times is None or len(times) < limit:
                return 0.0
            return times[0] + POST_WINDOW_SECONDS - self.clock()

    def record(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            self._window(key, now)
            self._times.setdefault(key, deque()).append(now)
            if len(self._times) > 10_000:  # many names or addresses: forget the idle ones
                for idle in [k for k in self._times if self._window(k, now) is None]:
                    self._times.pop(idle, None)

    def _window(self, key: str, now: float) -> deque[float] | None:
        times = self._times.get(key)
        if times is None:
            return None
        while times and times[0] <= now - POST_WINDOW_SECONDS:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        return times


POST_LIMITER_KEY: web.AppKey[PostLimiter] = web.AppKey("room_post_limiter", PostLimiter)


@dataclass
class MessageView:
    seq: int
    event_id: str
    sender: str
    name: str
    body: str
    html: Markup | None  # the bot's rendered Markdown; None: show ``body`` as text
    time: str
    is_bot: bool
    mentions_bot: bool
    thread_root: str | None
    thread: list[MessageView] = field(default_factory=list)


def add_room_routes(app: web.Application) -> None:
    """Register ``/room``, ``/room/messages``, ``/room/events`` and, if absent, ``/static/``."""
    app.router.add_get("/room", room_page, name="local-room")
    app.router.add_post("/room/messages", post_message, name="local-room-messages")
    app.router.add_get("/room/events", room_events, name="local-room-events")
    app[POST_LIMITER_KEY] = PostLimiter()
    add_static(app)


def add_static(app: web.Application) -> None:
    """Serve ``bot/web/static`` at ``/static/`` once, whoever (room or dashboard) asks first."""
    if "static" in app.router.named_resources():
        return
    for resource in app.router.resources():
        if resource.canonical in ("/static", "/static/"):
            return
    app.router.add_static("/static/", STATIC_DIR, name="static")


def _room(request: web.Request) -> LocalRoom:
    room = request.config_dict[CTX_KEY].local_room
    if room is None:
        raise web.HTTPNotFound(text="this bot runs in a Matrix room, not the local room")
    return room


# --- views of events --------------------------------------------------------------------------
def _when(ms: int) -> str:
    return utc_from_ms(ms).strftime("%Y-%m-%d %H:%M UTC")


def message_view(seq: int, raw: Raw, bot_user: str) -> MessageView | None:
    """What the page shows for a message event; None for reactions, edits and the like."""
    content = raw.get("content")
    if raw.get("type") != "m.room.message" or not isinstance(content, dict):
        return None
    if relation(raw).get("rel_type") == "m.replace":
        return None  # the local room has no editing; a stray edit is not a new message
    sender = str(raw.get("sender", ""))
    body = content.get("body")
    body = body if isinstance(body, str) else ""
    is_bot = sender == bot_user
    # Safe to mark: the renderer escapes any raw HTML in the Markdown and drops images.
    html = (
        Markup(markdown_to_html(body)) if is_bot and content.get("msgtype") == "m.notice" else None
    )
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
    ts = raw.get("origin_server_ts")
    return MessageView(
        seq=seq,
        event_id=str(raw.get("event_id", "")),
        sender=sender,
        name=localpart(sender),
        body=body,
        html=html,
        time=_when(ts if isinstance(ts, int) else 0),
        is_bot=is_bot,
        mentions_bot=isinstance(user_ids, list) and bot_user in user_ids,
        thread_root=thread_root_of(raw),
    )


def build_timeline(rows: list[tuple[int, Raw]], bot_user: str) -> list[MessageView]:
    """Top-level messages oldest first, each with its thread replies nested in order."""
    roots: dict[str, MessageView] = {}
    timeline: list[MessageView] = []
    for seq, raw in rows:
        view = message_view(seq, raw, bot_user)
        if view is None:
            continue
        parent = roots.get(view.thread_root) if view.thread_root else None
        if parent is not None:
            parent.thread.append(view)
        else:  # a root, or a reply whose root scrolled out of the page: show it on its own
            roots[view.event_id] = view
            timeline.append(view)
    return timeline


def event_json(seq: int, raw: Raw, bot_user: str) -> Raw:
    view = message_view(seq, raw, bot_user)
    item: Raw = {
        "seq": seq,
        "event_id": raw.get("event_id"),
        "type": raw.get("type"),
        "sender": raw.get("sender"),
    }
    if view is not None:
        item.update(
            name=view.name,
            body=view.body,
            html=str(view.html) if view.html is not None else None,
            time=view.time,
            bot=view.is_bot,
            mentions_bot=view.mentions_bot,
            thread_root=view.thread_root,
        )
    elif raw.get("type") == "m.reaction":
        relates = relation(raw)
        item.update(relates_to=relates.get("event_id"), key=relates.get("key"))
    return item


# --- handlers -----------------------------------------------------------------------------------
def _valid_token(value: str) -> bool:
    return 32 <= len(value) <= 128 and set(value) <= _TOKEN_CHARS


def _new_token() -> str:
    return secrets.token_urlsafe(32)


async def room_page(request: web.Request) -> web.Response:
    return await _page(request)


async def _page(
    request: web.Request,
    *,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> web.Response:
    room = _room(request)
    budget = request.config_dict[CTX_KEY].settings.local_room_page_bytes
    rows = await asyncio.to_thread(room.recent, PAGE_EVENTS, budget)
    timeline = build_timeline(rows, room.bot_user)
    form = form or {}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    token = cookie if _valid_token(cookie) else _new_token()
    thread_root = form.get("thread_root") or request.query.get("thread", "")
    replying_to = next((m for m in timeline if thread_root and m.event_id == thread_root), None)
    name = form.get("name", request.cookies.get(NAME_COOKIE, ""))
    response = render(
        request,
        "room.html",
        {
            "room_id": room.room_id,
            "bot_user": room.bot_user,
            "bot_name": localpart(room.bot_user),
            "messages": timeline,
            # Live updates continue from the last event drawn, so none slips between.
            "last_seq": rows[-1][0] if rows else 0,
            "room_csrf": token,
            "txn_id": _new_token(),
            "thread_root": replying_to.event_id if replying_to else "",
            "replying_to": replying_to,
            "name": name,
            "body": form.get("body", ""),
            "mention_bot": form.get("mention_bot", "on") != "",
            "error": error,
        },
        status=status,
    )
    response.headers.update(_PAGE_HEADERS)
    if token != cookie:
        response.set_cookie(CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="Strict")
    return response


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def post_message(request: web.Request) -> web.StreamResponse:
    room = _room(request)
    data = await request.post()
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.get("csrf", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        if _wants_json(request):
            return web.json_response({"error": CSRF_REFUSED}, status=403)
        raise web.HTTPForbidden(text=CSRF_REFUSED)
    mention = bool(fields.get("mention_bot"))
    thread_root = fields.get("thread_root", "").strip() or None
    settings = request.config_dict[CTX_KEY].settings
    limiter = request.config_dict[POST_LIMITER_KEY]
    address = "address:" + client_address(request)
    wait = limiter.retry_after(address, settings.local_room_posts_per_minute_per_address)
    if wait > 0:
        return _too_many(request, wait, "from this address")
    limiter.record(address)  # every attempt counts: a refused one costs a page render too
    try:
        user = room.user_id_for(fields.get("name", ""))
        name_key = "name:" + user
        wait = limiter.retry_after(name_key, settings.local_room_posts_per_minute_per_name)
        if wait > 0:
            return _too_many(request, wait, "under this name")
        limiter.record(name_key)
        event_id = await asyncio.to_thread(
            room.post,
            user,
            fields.get("body", ""),
            thread_root=thread_root,
            mentions=(room.bot_user,) if mention else (),
            txn_id=fields.get("txn_id") or None,
        )
    except LocalRoomInputError as exc:
        message = f"Not sent: {exc}."
        if _wants_json(request):
            return web.json_response({"error": message}, status=400)
        shown = {**fields, "mention_bot": "on" if mention else ""}
        return await _page(request, error=message, status=400, form=shown)
    name = fields.get("name", "").strip()
    response: web.StreamResponse
    if _wants_json(request):
        response = web.json_response({"event_id": event_id}, status=201)
    else:
        # 303: the browser follows with a GET, so a reload does not post the message again.
        location = f"/room#{quote(event_id, safe='$')}"
        response = web.Response(status=303, headers={"Location": location})
    response.set_cookie(NAME_COOKIE, name, path=COOKIE_PATH, max_age=365 * 86400, samesite="Strict")
    return response


def _too_many(request: web.Request, wait: float, per: str) -> web.Response:
    """429 with ``Retry-After``: a short answer, not the page, so a flood costs no renders
    (the browser's Back keeps what was typed)."""
    seconds = max(1, math.ceil(wait))
    message = f"Not sent: too many messages {per}; try again in {seconds} s."
    headers = {"Retry-After": str(seconds)}
    if _wants_json(request):
        return web.json_response({"error": message}, status=429, headers=headers)
    return web.Response(status=429, text=message, headers=headers)


async def room_events(request: web.Request) -> web.Response:
    room = _room(request)
    raw_since = request.query.get("since", "0")
    if not raw_since.isdigit() or len(raw_since) > 18:
        return web.json_response({"error": "since must be a non-negative integer"}, status=400)
    budget = request.config_dict[CTX_KEY].settings.local_room_page_bytes
    # Within the byte budget: the script asks again from the last seq it got for the rest.
    rows = await asyncio.to_thread(room.events_after, int(raw_since), EVENTS_PER_POLL, budget)
    return web.json_response([event_json(seq, raw, room.bot_user) for seq, raw in rows])

"""Sign-in for the dashboard: sessions in a cookie, CSRF tokens, a throttled login form.

The cookie holds a random token; the database keeps only its SHA-256, the user and a CSRF
token for the session. Every POST outside the public paths must carry that CSRF token (form
field ``csrf_token`` or header ``X-CSRF-Token``). The login form itself is protected by a
double-submit token: a short-lived cookie whose value the form repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.store.auth_store import AuthStore, SessionInfo
from bot.web.context import CTX_KEY
from bot.web.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from bot.web.templating import CSRF_KEY, USER_KEY, render

SESSION_COOKIE = "supportbot_session"
LOGIN_CSRF_COOKIE = "supportbot_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_LANDING = "/queue"
AUTH_STORE_KEY = web.AppKey("auth_store", AuthStore)
SESSION_HASH_KEY = web.RequestKey("session_hash", str)

# Reachable without signing in: health probes, the login form, static files and the local
# room (a chat page for anyone who can reach the bot; it has its own rules).
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/login",
        "/favicon.ico",
        "/healthz",
        "/readyz",
        "/metrics",
        "/room",
        "/room/messages",
        "/room/events",
    }
)
PUBLIC_PREFIXES = ("/static/",)
# Public pages that still want to know who is signed in (to send them on).
_SESSION_AWARE = frozenset({"/", "/login"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Dashboard pages: no third-party anything, no framing, and never cached (they show the queue).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def safe_next(value: str | None) -> str:
    """A local path to return to after signing in; anything else (other hosts, scheme-relative
    ``//host``, backslashes browsers treat as slashes, the login page itself) gives the queue."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_LANDING
    if any(ord(c) < 0x20 or c == "\\" for c in value):
        return DEFAULT_LANDING
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return DEFAULT_LANDING
    return value


def client_address(request: web.Request) -> str:
    # Behind a reverse proxy this is the proxy; aiohttp's forwarded-header support (or the
    # proxy's own rate limit) is the operator's choice, not something to trust blindly here.
    return request.remote or "unknown"


def _store(request: web.Request) -> AuthStore:
    return request.app[AUTH_STORE_KEY]


async def _session_of(request: web.Request) -> tuple[str, SessionInfo] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 256:
        return None
    digest = token_hash(token)
    info = await asyncio.to_thread(_store(request).session, digest, utcnow())
    return (digest, info) if info else None


def _csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


async def _submitted_csrf(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    public = is_public(path)
    # Probes, static files and the room never look at the session: they must keep answering
    # whatever the database is doing, and the room's polling should cost no query.
    found = await _session_of(request) if not public or path in _SESSION_AWARE else None
    if found is not None:
        digest, info = found
        request[USER_KEY] = info.user_name
        request[CSRF_KEY] = info.csrf_token
        request[SESSION_HASH_KEY] = digest
    if public:
        response = await handler(request)
        if path in _SESSION_AWARE:
            response.headers.update(_PAGE_HEADERS)
        return response
    if found is None:
        if request.method in _SAFE_METHODS:
            # The raw (still percent-encoded) path: event ids may hold "/" or "?" once decoded.
            raise web.HTTPFound("/login?next=" + quote(request.rel_url.raw_path_qs, safe="/"))
        raise web.HTTPForbidden(text="sign in first")
    if request.method not in _SAFE_METHODS and not _csrf_ok(
        found[1].csrf_token, await _submitted_csrf(request)
    ):
        raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page and try again")
    response = await handler(request)
    for name, value in _PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# --- pages ---------------------------------------------------------------------------------------
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(DEFAULT_LANDING if request.get(USER_KEY) else "/login")


def _login_page(
    request: web.Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> web.Response:
    # The double-submit token lives as long as its cookie: re-rendering the form (another tab,
    # or the browser's own /favicon.ico fetch bounced here) must not void a form already shown.
    existing = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    form_token = existing if len(existing) >= 32 else secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "login_csrf": form_token,
            "next": safe_next(request.query.get("next")),
            "error": error,
            "notice": notice,
            "name": "",
        },
        status=status,
    )
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, form_token, max_age=3600, path="/login")
    return response


def _set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    max_age: int,
    path: str = "/",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="Lax",
        secure=request.app[CTX_KEY].settings.web_secure_cookies,
    )


async def login_form(request: web.Request) -> web.StreamResponse:
    if request.get(USER_KEY):
        raise web.HTTPFound(safe_next(request.query.get("next")))
    notice = "You have signed out." if request.query.get("flash") == "signed-out" else None
    return _login_page(request, notice=notice)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    if not _csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get(CSRF_FIELD, ""))):
        raise web.HTTPForbidden(text="the sign-in form expired; reload the page and try again")
    settings = request.app[CTX_KEY].settings
    store = _store(request)
    # The key column holds 255 characters; a longer name is not a user anyway.
    keys = [f"user:{name.lower()[:200]}", f"addr:{client_address(request)[:200]}"]
    now = utcnow()
    limits = {"max_failures": settings.login_max_failures}
    # Counted before the check, in one statement per key: parallel guesses cannot all slip
    # through between a lock check and a failure count.
    counted = await asyncio.to_thread(
        store.count_attempt, keys, now, lockout_seconds=settings.login_lockout_seconds, **limits
    )
    if counted.refused_for > 0:
        return _locked(request, counted.refused_for)
    pool = request.app[HASH_POOL_KEY]
    if not pool.reserve():
        # Not checked, so not counted either: a busy moment must not lock anyone out.
        for key in keys:
            await asyncio.to_thread(store.uncount_attempt, key, **limits)
        return _busy(request)
    try:
        next_path = str(form.get("next", ""))
        return await _check(request, next_path, name, password, keys, counted.locks_for)
    finally:
        pool.release()


async def _check(
    request: web.Request,
    next_path: str,
    name: str,
    password: str,
    keys: list[str],
    locks_for: float,
) -> web.StreamResponse:
    """The password check and, when it matches, the new session."""
    settings = request.app[CTX_KEY].settings
    store = _store(request)
    pool = request.app[HASH_POOL_KEY]
    limits = {"max_failures": settings.login_max_failures}
    now = utcnow()
    stored = await asyncio.to_thread(store.password_hash, name) if name else None
    ok = await pool.run(_password_matches, password, stored)
    if stored is None or not ok:
        if locks_for > 0:
            return _locked(request, locks_for)
        return _login_page(request, error="Wrong user name or password.", status=401)
    # The name's count is cleared; the address only gets this attempt back (it may be
    # trying other accounts too).
    await asyncio.to_thread(store.clear_failures, keys[:1])
    await asyncio.to_thread(store.uncount_attempt, keys[1], **limits)
    fresh_hash = await pool.run(hash_password, password) if needs_rehash(stored) else None
    await asyncio.to_thread(store.record_login, name, now, fresh_hash)
    token = secrets.token_urlsafe(32)
    hours = settings.web_session_hours
    await asyncio.to_thread(
        store.create_session,
        token_hash(token),
        name,
        secrets.token_urlsafe(32),
        now + timedelta(hours=hours),
    )
    await asyncio.to_thread(store.purge_expired_sessions, now)
    response = web.HTTPSeeOther(safe_next(next_path))
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=int(hours * 3600))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


class HashPool:
    """Threads of their own for password hashing, with a bounded wait.

    scrypt is slow and memory-hard on purpose; run on asyncio's default executor, a flood of
    sign-ins would take the threads every database call needs. Here a few threads hash and a
    few attempts may wait; beyond that the sign-in is refused (503) before anything is done.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="passwords")
        self._capacity = workers + queue
        self._taken = 0  # only touched on the event loop

    def reserve(self) -> bool:
        if self._taken >= self._capacity:
            return False
        self._taken += 1
        return True

    def release(self) -> None:
        self._taken -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


HASH_POOL_KEY = web.AppKey("password_hash_pool", HashPool)
BUSY_RETRY_SECONDS = 5


def _password_matches(password: str, stored: str | None) -> bool:
    """Runs in a worker thread: scrypt is slow on purpose. An unknown name is checked against
    a dummy hash so it takes as long as a wrong password."""
    return verify_password(password, stored or dummy_hash()) and stored is not None


def _busy(request: web.Request) -> web.Response:
    response = _login_page(
        request,
        error=f"Too many sign-ins at once, try again in {BUSY_RETRY_SECONDS} s.",
        status=503,
    )
    response.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
    return response


def _locked(request: web.Request, seconds: float) -> web.Response:
    wait = max(1, int(seconds + 0.999))
    response = _login_page(
        request, error=f"Too many failed attempts, try again in {wait} s.", status=429
    )
    response.headers["Retry-After"] = str(wait)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    digest = request.get(SESSION_HASH_KEY)
    if digest is not None:
        await asyncio.to_thread(_store(request).delete_session, digest)
    response = web.HTTPSeeOther("/login?flash=signed-out")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def add_auth_routes(app: web.Application) -> None:
    settings = app[CTX_KEY].settings
    pool = HashPool(settings.login_hash_workers, settings.login_hash_queue)
    app[HASH_POOL_KEY] = pool

    async def close_pool(_app: web.Application) -> None:
        pool.close()

    app.on_cleanup.append(close_pool)
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)

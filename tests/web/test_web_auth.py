"""Dashboard sign-in: passwords, sessions, CSRF, the login throttle and `supportbot users`.

Everything runs the real app (``build_app``) on the aiohttp test server over a real SQLite
database; the only shortcut is moving stored times into the past instead of waiting.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.cli.main import main
from bot.metrics import Metrics
from bot.settings import load_settings
from bot.store.auth_store import AuthStore
from bot.store.database import Database
from bot.store.models import LoginThrottleRow, UserRow, WebSessionRow
from bot.store.room_store import RoomStore
from bot.web.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, safe_next, token_hash
from bot.web.context import WebContext
from bot.web.passwords import TEST_COST_ENV, hash_password, needs_rehash, verify_password
from tests.web.web_helpers import PASSWORD, add_user, csrf_in, login, make_context, serve, signed_in

Client = TestClient[Any, Any]


# --- passwords -----------------------------------------------------------------------------------
def test_password_hash_names_its_parameters_and_verifies() -> None:
    encoded = hash_password(PASSWORD)
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", os.environ[TEST_COST_ENV], "8", "1")
    assert PASSWORD not in encoded and len(salt) >= 21 and len(digest) >= 42
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "!", encoded)
    assert hash_password(PASSWORD) != encoded  # a fresh salt each time
    assert not needs_rehash(encoded)


def test_older_parameters_still_verify_and_ask_for_a_rehash() -> None:
    cheap = hash_password(PASSWORD, n=2**10, r=4)
    assert verify_password(PASSWORD, cheap)
    assert needs_rehash(cheap)


@pytest.mark.parametrize(
    "encoded", ["", "plain", "bcrypt$1$2$3$4$5", "scrypt$15$8$1$AAAA$AAAA", "scrypt$x$8$1$A$A"]
)
def test_malformed_hashes_never_match(encoded: str) -> None:
    assert not verify_password(PASSWORD, encoded)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/questions/%24abc?flash=x", "/questions/%24abc?flash=x"),
        ("/try?q=hello", "/try?q=hello"),
        (None, "/queue"),
        ("", "/queue"),
        ("https://evil.example/", "/queue"),
        ("//evil.example/x", "/queue"),
        ("/\\evil.example", "/queue"),
        ("javascript:alert(1)", "/queue"),
        ("/login?next=/queue", "/queue"),
        ("/queue\r\nSet-Cookie: x=1", "/queue"),
    ],
)
def test_next_is_only_ever_a_local_path(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


# --- signing in and out --------------------------------------------------------------------------
def test_login_sets_a_hashed_session_and_a_strict_cookie(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/login"
        page = await client.get("/login")
        assert page.status == 200
        assert "Content-Security-Policy" in page.headers
        response = await login(client)
        assert response.status == 303 and response.headers["Location"] == "/queue"
        cookie = response.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["secure"]
        token = cookie.value
        with ctx.db.session() as s:
            [row] = s.scalars(select(WebSessionRow)).all()
            assert row.token_hash == token_hash(token) != token  # only the hash is stored
            assert row.user_name == "maria" and len(row.csrf_token) >= 32
            hours = (row.expires_at - datetime.now(UTC)) / timedelta(hours=1)
            assert 11.9 < hours <= 12
            user = s.get(UserRow, "maria")
            assert user is not None and user.last_login_at is not None
        queue = await client.get("/queue")
        assert queue.status == 200 and "maria" in await queue.text()
        assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/queue"
        # Signed in already: the login page sends you on.
        again = await client.get("/login", allow_redirects=False)
        assert again.status == 302 and again.headers["Location"] == "/queue"

    serve(ctx, scenario)


def test_secure_cookies_when_configured(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(
        tmp_path, database_url, settings={"web_secure_cookies": True, "web_session_hours": 2}
    )
    add_user(ctx)

    async def scenario(client: Client) -> None:
        page = await client.get("/login")
        form_cookie = page.cookies[LOGIN_CSRF_COOKIE]
        assert form_cookie["secure"] and form_cookie["path"] == "/login"
        # The test server is plain HTTP, where a client keeps Secure cookies to itself: send
        # the form's cookie by hand, as a browser on HTTPS would.
        form = {"csrf_token": csrf_in(await page.text()), "name": "maria", "password": PASSWORD}
        response = await client.post(
            "/login",
            data=form,
            headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={form_cookie.value}"},
            allow_redirects=False,
        )
        assert response.status == 303
        cookie = response.cookies[SESSION_COOKIE]
        assert cookie["secure"] and cookie["httponly"] and cookie["max-age"] == str(2 * 3600)

    serve(ctx, scenario)


def test_wrong_password_or_unknown_user_is_refused_alike(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url, settings={"login_max_failures": 10})
    add_user(ctx)

    async def scenario(client: Client) -> None:
        for name, password in (("maria", "wrong password"), ("nobody", PASSWORD), ("", "")):
            response = await login(client, name, password)
            assert response.status == 401
            assert "Wrong user name or password." in await response.text()
            assert SESSION_COOKIE not in response.cookies
        assert (await client.get("/queue", allow_redirects=False)).status == 302

    serve(ctx, scenario)


def test_login_form_needs_its_own_token(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        # A cross-site form cannot read the token: without it nobody is signed in.
        form = {"name": "maria", "password": PASSWORD}
        response = await client.post("/login", data=form, allow_redirects=False)
        assert response.status == 403
        await client.get("/login")  # sets the cookie, but the form still lacks the value
        response = await client.post(
            "/login", data={**form, "csrf_token": "guess"}, allow_redirects=False
        )
        assert response.status == 403

    serve(ctx, scenario)


def test_lockout_after_repeated_failures(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(
        tmp_path, database_url, settings={"login_max_failures": 3, "login_lockout_seconds": 600}
    )
    add_user(ctx)

    async def scenario(client: Client) -> None:
        for _ in range(2):
            assert (await login(client, "maria", "nope nope")).status == 401
        locked = await login(client, "maria", "nope nope")
        assert locked.status == 429
        text = await locked.text()
        assert "too many failed attempts, try again in" in text.lower()
        wait = int(text.split("try again in ", 1)[1].split(" s", 1)[0])
        assert 590 <= wait <= 600 and locked.headers["Retry-After"] == str(wait)
        # Even the right password is refused while locked.
        assert (await login(client)).status == 429
        # Once the lock has run out (moved into the past, not waited for) it works again.
        with ctx.db.session() as s:
            s.execute(
                update(LoginThrottleRow).values(
                    locked_until=datetime.now(UTC) - timedelta(seconds=1)
                )
            )
        assert (await login(client)).status == 303

    serve(ctx, scenario)


def test_lockout_per_client_address_across_names(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url, settings={"login_max_failures": 3})
    add_user(ctx)

    async def scenario(client: Client) -> None:
        assert (await login(client, "anna", "guess one")).status == 401
        assert (await login(client, "bert", "guess two")).status == 401
        assert (await login(client, "carl", "guess three")).status == 429
        assert (await login(client)).status == 429  # the address is locked, whatever the name
        with ctx.db.session() as s:
            keys = set(s.scalars(select(LoginThrottleRow.key)))
        assert {"user:anna", "user:bert", "user:carl", "addr:127.0.0.1"} <= keys

    serve(ctx, scenario)


def test_expired_session_signs_out(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        with ctx.db.session() as s:
            s.execute(
                update(WebSessionRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        response = await client.get("/queue", allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == "/login?next=/queue"
        with ctx.db.session() as s:
            assert s.scalars(select(WebSessionRow)).all() == []  # removed on sight

    serve(ctx, scenario)


def test_logout_deletes_the_session(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        token = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE]
        # Logging out is a POST like any other: it needs the token.
        assert (await client.post("/logout", allow_redirects=False)).status == 403
        response = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/login?flash=signed-out"
        with ctx.db.session() as s:
            assert s.scalars(select(WebSessionRow)).all() == []
        page = await client.get("/login?flash=signed-out")
        assert "You have signed out." in await page.text()
        # The old cookie, replayed, is worth nothing.
        client.session.cookie_jar.update_cookies({SESSION_COOKIE: token.value})
        assert (await client.get("/queue", allow_redirects=False)).status == 302

    serve(ctx, scenario)


def test_signed_out_get_redirects_with_next_and_comes_back(
    tmp_path: Path, database_url: str
) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        response = await client.get("/try?q=early+stopping", allow_redirects=False)
        assert response.status == 302
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": ["/try?q=early+stopping"]}
        page = await client.get(response.headers["Location"])
        assert 'name="next" value="/try?q=early+stopping"' in await page.text()
        back = await login(client, next_path="/try?q=early+stopping")
        assert back.status == 303 and back.headers["Location"] == "/try?q=early+stopping"

    serve(ctx, scenario)


def test_crafted_next_stays_on_site(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        response = await login(client, next_path="//evil.example/")
        assert response.status == 303 and response.headers["Location"] == "/queue"

    serve(ctx, scenario)


@pytest.mark.parametrize(
    "path",
    [
        "/logout",
        "/questions/%24q1/post",
        "/questions/%24q1/answered",
        "/questions/%24q1/dismiss",
        "/questions/%24q1/vote",
        "/try",
        "/index/rebuild",
    ],
)
def test_signed_out_posts_are_forbidden(tmp_path: Path, path: str, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)

    async def scenario(client: Client) -> None:
        response = await client.post(path, data={"csrf_token": "x"}, allow_redirects=False)
        assert response.status == 403

    serve(ctx, scenario)


def test_posts_need_the_sessions_csrf_token(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_user(ctx, "otto")

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        for data in ({}, {"csrf_token": ""}, {"csrf_token": csrf + "x"}, {"q": csrf}):
            response = await client.post("/try", data=data, allow_redirects=False)
            assert response.status == 403, data
        # Another session's token is no good here either.
        with ctx.db.session() as s:
            other = "another-sessions-token"
            s.add(
                WebSessionRow(
                    token_hash=token_hash("other-cookie"),
                    user_name="otto",
                    csrf_token=other,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
            )
        assert (await client.post("/try", data={"csrf_token": other})).status == 403
        assert (await client.post("/try", data={"csrf_token": csrf, "q": ""})).status == 200
        # fetch() sends it as a header instead.
        headers = {"X-CSRF-Token": csrf}
        assert (await client.post("/try", data={"q": ""}, headers=headers)).status == 200

    serve(ctx, scenario)


def test_public_paths_need_no_session(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)

    async def scenario(client: Client) -> None:
        for path in ("/healthz", "/readyz", "/metrics", "/static/app.css", "/static/queue.js"):
            assert (await client.get(path, allow_redirects=False)).status == 200, path
        for path in ("/queue", "/queue/updates", "/questions/x", "/try", "/index", "/insights"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 302, path
            assert response.headers["Location"].startswith("/login?next=")

    serve(ctx, scenario)


def test_new_password_signs_out_old_sessions(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    store = AuthStore(ctx.db)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        assert store.add_user("maria", hash_password("another password")) == "exists"
        assert (await client.get("/queue")).status == 200
        assert store.add_user("maria", hash_password("another password"), update_existing=True)
        assert (await client.get("/queue", allow_redirects=False)).status == 302
        assert (await login(client, "maria", "another password")).status == 303

    serve(ctx, scenario)


# --- supportbot users ----------------------------------------------------------------------------
def users(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    code = main(["users", *args, "--data-dir", str(data_dir)])
    return code, out.getvalue(), err.getvalue()


def test_users_add_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    assert users(monkeypatch, data, "add", "maria", stdin=PASSWORD + "\n") == (
        0,
        "user maria created\n",
        "",
    )
    code, _, err = users(monkeypatch, data, "add", "maria", stdin="something else\n")
    assert code == 2 and "exists; use --update" in err
    code, out, _ = users(monkeypatch, data, "add", "maria", "--update", stdin="new password!\n")
    assert (code, out) == (0, "user maria updated\n")
    code, _, err = users(monkeypatch, data, "add", "otto", stdin="short\n")
    assert code == 2 and "at least 8 characters" in err
    code, _, err = users(monkeypatch, data, "add", "two words", stdin=PASSWORD + "\n")
    assert code == 2 and "without spaces" in err

    code, out, _ = users(monkeypatch, data, "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["name", "created", "last", "sign-in"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["maria"]
    assert out.splitlines()[1].endswith("never")

    db = Database(f"sqlite:///{(data / 'supportbot.db').resolve()}")
    try:
        stored = AuthStore(db).password_hash("maria")
        assert stored is not None and stored.startswith("scrypt$")
        assert verify_password("new password!", stored)
        assert not verify_password(PASSWORD, stored)
    finally:
        db.close()

    assert users(monkeypatch, data, "remove", "maria")[:2] == (0, "user maria removed\n")
    code, _, err = users(monkeypatch, data, "remove", "maria")
    assert code == 2 and "no user 'maria'" in err
    assert "no dashboard users" in users(monkeypatch, data, "list")[1]


def test_users_add_asks_twice_at_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    answers = iter([PASSWORD, PASSWORD + "typo"])

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("sys.stdin", Terminal())
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["users", "add", "maria", "--data-dir", str(tmp_path)]) == 2
    assert "the two passwords differ" in err.getvalue()

    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["users", "add", "maria", "--data-dir", str(tmp_path)]) == 0


# --- the lockout under parallel attempts ---------------------------------------------------------
def _context_on(url: str, tmp_path: Path, **settings: Any) -> WebContext:
    """``make_context`` on a given database (the fixture's SQLite file or PostgreSQL)."""
    db = Database(url)
    db.create_schema()
    return WebContext(
        settings=load_settings(data_dir=tmp_path, **settings),
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, "test"),
    )


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every password check the login makes (the real check still runs)."""
    checked: list[str] = []
    lock = threading.Lock()

    def counting(password: str, encoded: str) -> bool:
        with lock:
            checked.append(password)
        return verify_password(password, encoded)

    monkeypatch.setattr("bot.web.auth.verify_password", counting)
    return checked


def test_parallel_wrong_passwords_are_counted_before_checking(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _context_on(database_url, tmp_path, login_max_failures=5, login_lockout_seconds=600)
    add_user(ctx)
    checked = _count_checks(monkeypatch)

    async def scenario(client: Client) -> None:
        page = await client.get("/login")
        form = {"csrf_token": csrf_in(await page.text()), "name": "maria", "password": "wrong!!!"}
        responses = await asyncio.gather(
            *(client.post("/login", data=form, allow_redirects=False) for _ in range(20))
        )
        statuses = sorted(r.status for r in responses)
        # Five attempts are checked; the fifth failure locks, the other fifteen are refused
        # unchecked. Nothing is lost to an error.
        assert statuses == [401] * 4 + [429] * 16
        assert len(checked) == 5
        assert all(r.headers.get("Retry-After") for r in responses if r.status == 429)
        # The right password waits for the lock like everyone else, and is not checked.
        assert (await login(client)).status == 429
        assert len(checked) == 5
        with ctx.db.session() as s:
            row = s.get(LoginThrottleRow, "user:maria")
            assert row is not None and row.locked_until is not None

    serve(ctx, scenario)


def test_a_success_clears_the_names_count(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url, settings={"login_max_failures": 3})
    add_user(ctx)

    async def scenario(client: Client) -> None:
        assert (await login(client, "maria", "nope nope")).status == 401
        assert (await login(client, "maria", "nope nope")).status == 401
        assert (await login(client)).status == 303
        with ctx.db.session() as s:
            assert s.get(LoginThrottleRow, "user:maria") is None
            # The address's count is not wiped by one good sign-in (it may be guessing other
            # names), but the sign-in itself does not count against it.
            addr = s.get(LoginThrottleRow, "addr:127.0.0.1")
            assert addr is not None and addr.failures == 2 and addr.locked_until is None

    serve(ctx, scenario)


def test_a_full_hashing_pool_answers_503_and_leaves_the_database_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    ctx = make_context(
        tmp_path,
        database_url,
        settings={"login_max_failures": 10, "login_hash_workers": 1, "login_hash_queue": 0},
    )
    add_user(ctx)
    entered, release = threading.Event(), threading.Event()

    def blocking(password: str, encoded: str) -> bool:
        if password == "hold the pool":
            entered.set()
            release.wait(timeout=60)
        return verify_password(password, encoded)

    async def scenario(client: Client) -> None:
        page = await client.get("/login")
        form_token = page.cookies[LOGIN_CSRF_COOKIE].value
        csrf = await signed_in(client)

        def attempt(password: str) -> Any:
            # The login form as a second browser tab saw it (this one is signed in now).
            form = {"csrf_token": form_token, "name": "maria", "password": password}
            cookie = {"Cookie": f"{LOGIN_CSRF_COOKIE}={form_token}"}
            return client.post("/login", data=form, headers=cookie, allow_redirects=False)

        monkeypatch.setattr("bot.web.auth.verify_password", blocking)
        held = asyncio.ensure_future(attempt("hold the pool"))
        assert await asyncio.to_thread(entered.wait, 60)
        try:
            busy = await attempt("another guess")
            assert busy.status == 503 and busy.headers["Retry-After"]
            # Pages that need the database still answer while the hashing pool is busy.
            assert (await client.get("/queue")).status == 200
            assert (await client.post("/try", data={"csrf_token": csrf, "q": ""})).status == 200
        finally:
            release.set()
        assert (await held).status == 401
        with ctx.db.session() as s:
            row = s.get(LoginThrottleRow, "user:maria")
            assert row is not None and row.failures == 1  # the refused one was not counted

    serve(ctx, scenario)


def test_default_cost_is_owasps_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_COST_ENV, raising=False)
    encoded = hash_password(PASSWORD)
    assert encoded.split("$")[1:4] == [str(2**17), "8", "1"]
    assert verify_password(PASSWORD, encoded) and not needs_rehash(encoded)
    # What the test suite's cheaper setting made is rehashed at the next sign-in.
    assert needs_rehash(hash_password(PASSWORD, n=2**14))


def test_an_old_hash_is_replaced_at_the_next_sign_in(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    store = AuthStore(ctx.db)
    assert store.add_user("maria", hash_password(PASSWORD, n=2**10, r=4)) == "created"

    async def scenario(client: Client) -> None:
        assert (await login(client)).status == 303
        stored = store.password_hash("maria")
        assert stored is not None and not needs_rehash(stored)
        assert stored.split("$")[1:4] == [os.environ[TEST_COST_ENV], "8", "1"]
        assert verify_password(PASSWORD, stored)

    serve(ctx, scenario)

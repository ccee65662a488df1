"""DNS rebinding and cross-site posts: the served app (``build_app``) answers only for its own
host names and takes state-changing requests only from its own pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.store.local_room import LocalRoom
from bot.web.origin import HostRules, host_name
from bot.web.room import CSRF_COOKIE
from tests.web.web_helpers import add_user, csrf_in, make_context, serve, signed_in

Client = TestClient[Any, Any]
REBOUND = "attacker.example:8080"  # the attacker's name, resolved to 127.0.0.1 by its DNS


def _ctx(tmp_path: Path, **settings: Any) -> Any:
    # Host and Origin are checked before any handler reads the database: SQLite is enough.
    ctx = make_context(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", settings=settings)
    ctx.local_room = LocalRoom(ctx.db, ctx.settings.local_room_id, ctx.settings.local_bot_user)
    add_user(ctx)
    return ctx


def _origin(client: Client) -> str:
    return f"http://{client.host}:{client.port}"


async def _room_form(client: Client, **fields: str) -> dict[str, str]:
    page = await client.get("/room")
    assert page.status == 200
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token is not None
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/room"))[CSRF_COOKIE]
    assert cookie.value == token.group(1)
    return {"csrf": token.group(1), "name": "alice", "body": "hello", **fields}


def _room_messages(ctx: Any) -> list[str]:
    return [raw["content"]["body"] for _, raw in ctx.local_room.recent(100)]


def test_a_rebinding_host_is_refused_everywhere(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)

    async def scenario(client: Client) -> None:
        for path in ("/room", "/room/events?since=0", "/login", "/queue", "/healthz", "/"):
            refused = await client.get(path, headers={"Host": REBOUND}, allow_redirects=False)
            assert refused.status == 421, path
            assert "SUPPORTBOT_WEB_ALLOWED_HOSTS" in await refused.text()
        form = await _room_form(client)
        posted = await client.post(
            "/room/messages", data=form, headers={"Host": REBOUND, "Origin": f"http://{REBOUND}"}
        )
        assert posted.status == 421
        # The loopback names and IP literals (probes send Host: ip:port) are served.
        for host in (f"127.0.0.1:{client.port}", f"localhost:{client.port}", "[::1]:8080"):
            assert (await client.get("/room", headers={"Host": host})).status == 200, host
        assert (await client.get("/healthz", headers={"Host": "10.1.2.3:8080"})).status == 200
        assert (await client.get("/metrics", headers={"Host": "LOCALHOST."})).status == 200

    serve(ctx, scenario)
    assert _room_messages(ctx) == []


def test_cross_origin_posts_are_refused_and_same_origin_ones_work(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)

    async def scenario(client: Client) -> None:
        form = await _room_form(client)
        for headers in (
            {"Origin": "http://attacker.example"},
            {"Origin": f"http://localhost:{client.port + 1}"},  # another local app
            {"Origin": "null"},
            {"Referer": "https://attacker.example/page"},
        ):
            refused = await client.post("/room/messages", data=form, headers=headers)
            assert refused.status == 403, headers
            assert "another site" in await refused.text()
        as_json = await client.post(
            "/room/messages",
            data=form,
            headers={"Origin": "http://attacker.example", "Accept": "application/json"},
        )
        assert as_json.status == 403 and "another site" in (await as_json.json())["error"]

        login_page = await client.get("/login")
        login_form = {"csrf_token": csrf_in(await login_page.text()), "name": "maria"}
        login = await client.post(
            "/login", data=login_form, headers={"Origin": "http://attacker.example"}
        )
        assert login.status == 403

        same = await client.post(
            "/room/messages",
            data={**form, "body": "same origin"},
            headers={"Origin": _origin(client)},
            allow_redirects=False,
        )
        assert same.status == 303
        by_referer = await client.post(
            "/room/messages",
            data={**form, "body": "by referer"},
            headers={"Referer": _origin(client) + "/room"},
            allow_redirects=False,
        )
        assert by_referer.status == 303
        no_header = await client.post(
            "/room/messages", data={**form, "body": "no header"}, allow_redirects=False
        )
        assert no_header.status == 303  # not a browser page: the CSRF token decides

        csrf = await signed_in(client)
        dashboard = await client.post(
            "/logout", data={"csrf_token": csrf}, headers={"Origin": "http://attacker.example"}
        )
        assert dashboard.status == 403

    serve(ctx, scenario)
    assert _room_messages(ctx) == ["same origin", "by referer", "no header"]


def test_configured_names_are_served_for_a_reverse_proxy(tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path, web_host="bot.internal", web_allowed_hosts="support.example.org, Other.Example."
    )

    async def scenario(client: Client) -> None:
        for host in ("bot.internal:8080", "support.example.org", "other.example"):
            assert (await client.get("/room", headers={"Host": host})).status == 200, host
        assert (await client.get("/room", headers={"Host": REBOUND})).status == 421
        form = await _room_form(client)
        # The proxy forwards to 127.0.0.1:port; the browser's Origin is the public name.
        proxied = await client.post(
            "/room/messages",
            data=form,
            headers={"Origin": "https://support.example.org"},
            allow_redirects=False,
        )
        assert proxied.status == 303

    serve(ctx, scenario)


def test_a_star_turns_the_check_off(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, web_allowed_hosts="*")

    async def scenario(client: Client) -> None:
        assert (await client.get("/room", headers={"Host": REBOUND})).status == 200

    serve(ctx, scenario)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
        ("Example.ORG.:443", "example.org"),
        ("localhost", "localhost"),
    ],
)
def test_host_name(value: str, name: str) -> None:
    assert host_name(value) == name


def test_host_rules() -> None:
    rules = HostRules(["0.0.0.0", "bot.example"])
    assert rules.host_ok("bot.example:8080") and rules.host_ok("192.168.1.5")
    assert not rules.host_ok("0.0.0.0.attacker.example")
    assert not rules.host_ok("localhost.attacker.example")
    assert rules.origin_ok("https://bot.example", "127.0.0.1:8080")
    assert not rules.origin_ok("http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not rules.origin_ok("http://[bad", "127.0.0.1:8080")
    assert not rules.origin_ok("file:///tmp/x.html", "127.0.0.1:8080")

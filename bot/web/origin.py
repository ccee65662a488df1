"""Host and Origin checks: the web app answers only for its own names, and takes state-changing
requests only from its own pages.

DNS rebinding: a website the operator visits can point its own name at 127.0.0.1 and then read
and post to a bot bound to loopback, because to the browser that is the website's own origin.
What gives it away is the ``Host`` header: the attacker's name. So ``Host`` must be one of

- an IP literal (``127.0.0.1:8080``, ``[::1]:8080``, ``10.0.0.5:8080``): a browser sends an IP
  only when the page itself was opened by that IP, and no DNS answer can make it send one, so
  health probes (``Host: ip:port``) and docker port mappings keep working;
- ``localhost`` (browsers resolve it to loopback themselves, never through DNS);
- ``SUPPORTBOT_WEB_HOST`` when it is a name, and each name in ``SUPPORTBOT_WEB_ALLOWED_HOSTS``
  (the names a reverse proxy forwards; ``*`` turns the check off).

The port is not compared: rebinding cannot change the name, while tunnels and port mappings
legitimately change the port. Anything else gets ``421 Misdirected Request``.

A POST (any method but GET/HEAD/OPTIONS) from a browser must also come from one of this app's
pages: its ``Origin`` (or, where a browser sends none, its ``Referer``) must name the host the
request was sent to, or one of the configured names. Otherwise ``403``. A request with neither
header is not from a browser page and is left to the per-form CSRF tokens.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from bot.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "*"})


def host_name(value: str) -> str:
    """The name part of a ``Host`` value or a configured host: lower case, no port, no
    brackets around an IPv6 address, no trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostRules:
    """Which ``Host`` and ``Origin`` values the app accepts (see the module docstring)."""

    def __init__(self, configured: Iterable[str]) -> None:
        names = {host_name(h) for h in configured if h.strip()}
        self.any_host = "*" in names
        self.configured = frozenset(names - _WILDCARD_BINDS)

    @classmethod
    def from_settings(cls, settings: Settings) -> HostRules:
        return cls([settings.web_host, *settings.web_allowed_hosts])

    def host_ok(self, host: str | None) -> bool:
        if host is None or self.any_host:
            return True  # no Host: HTTP/1.0 or a hand-made request, never a browser
        name = host_name(host)
        return name == "localhost" or is_ip_literal(name) or name in self.configured

    def origin_ok(self, origin: str, host: str | None) -> bool:
        """Whether a page at ``origin`` (a URL) may change state through this ``Host``."""
        if self.any_host:
            return True
        try:
            parts = urlsplit(origin)
            netloc, hostname = parts.netloc.lower(), parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not hostname:
            return False  # "null" (sandboxed frames, file:// pages) and the like
        if host is not None and netloc == host.strip().lower():
            return True  # same origin as the address the browser sent the request to
        return host_name(hostname) in self.configured


def refuse_host(host: str) -> web.Response:
    return web.Response(
        status=421,
        text=(
            f"Misdirected request: this bot does not answer for the host {host[:100]!r}. "
            "Add the name to SUPPORTBOT_WEB_ALLOWED_HOSTS if it is yours (e.g. behind a proxy)."
        ),
    )


def make_host_origin_middleware(rules: HostRules) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def host_origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not rules.host_ok(host):
            return refuse_host(host or "")
        if request.method not in _SAFE_METHODS:
            source = request.headers.get("Origin") or request.headers.get("Referer")
            if source is not None and not rules.origin_ok(source, host):
                text = "Refused: this request came from another site's page."
                if "application/json" in request.headers.get("Accept", ""):
                    return web.json_response({"error": text}, status=403)
                return web.Response(status=403, text=text)
        return await handler(request)

    return host_origin_middleware

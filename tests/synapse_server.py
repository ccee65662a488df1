"""A throw-away Synapse homeserver on 127.0.0.1 for tests that need a real Matrix server.

Synapse runs from its own virtual environment (``.venv-synapse``, created by ``make synapse``)
so that its pins never fight the bot's; this module only needs the standard library and talks
to the server over HTTP on the loopback interface.  Every server gets its own directory (config,
signing key, SQLite database, logs), a client listener on a free port, no federation, no
presence, no open registration, and rate limits high enough that tests are not throttled unless
they ask to be (``rate_limits=``).

Usage from a test module (there is no shared conftest fixture on purpose)::

    import pytest
    from tests.synapse_server import SynapseServer, synapse_skip_reason

    @pytest.fixture(scope="module")
    def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
        reason = synapse_skip_reason()  # raises instead when SUPPORTBOT_TEST_REQUIRE_SYNAPSE=1
        if reason:
            pytest.skip(reason)
        with SynapseServer(tmp_path_factory.mktemp("synapse")) as server:  # start() ... stop()
            yield server

    def test_something(synapse: SynapseServer) -> None:
        alice = synapse.register("alice")
        room_id = synapse.create_room(alice)
        synapse.send_text(alice, room_id, "hello")
        assert synapse.messages(alice, room_id, event_type="m.room.message")[-1]["content"]

The helpers raise :class:`MatrixHTTPError` (``status``, ``errcode``, ``retry_after_ms``) on any
HTTP error except 429, which they ride out by sleeping ``retry_after_ms`` and retrying (each hit
is recorded in ``SynapseServer.rate_limit_hits``); pass ``ride_rate_limits=False`` to
:meth:`SynapseServer.request` to see the 429 itself.  Access tokens always travel in an
``Authorization: Bearer`` header, never in the URL.

Environment:
    SUPPORTBOT_TEST_SYNAPSE_PYTHON   the Python of a venv with ``matrix-synapse`` installed
                                     (default: ``<repo>/.venv-synapse/bin/python``).
    SUPPORTBOT_TEST_REQUIRE_SYNAPSE  "1": a missing Synapse is an error, not a skip (CI).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SYNAPSE_PYTHON = REPO / ".venv-synapse" / "bin" / "python"
SYNAPSE_PYTHON_ENV = "SUPPORTBOT_TEST_SYNAPSE_PYTHON"
REQUIRE_SYNAPSE_ENV = "SUPPORTBOT_TEST_REQUIRE_SYNAPSE"
HOST = "127.0.0.1"

# A limit nobody reaches in a test: effectively "not rate limited".
_UNLIMITED: dict[str, float] = {"per_second": 10_000, "burst_count": 100_000}

# Every ``rc_*`` limiter that Synapse 1.16x reads from its config (synapse/config/ratelimiting.py),
# with sub-keys where it has them.  Tests override any of them with ``rate_limits=``, e.g.
# ``{"rc_message": {"per_second": 1, "burst_count": 2}}`` (merged key by key into these).
DEFAULT_RATE_LIMITS: dict[str, Any] = {
    "rc_message": dict(_UNLIMITED),
    "rc_registration": dict(_UNLIMITED),
    "rc_registration_token_validity": dict(_UNLIMITED),
    "rc_login": {
        "address": dict(_UNLIMITED),
        "account": dict(_UNLIMITED),
        "failed_attempts": dict(_UNLIMITED),
    },
    "rc_joins": {"local": dict(_UNLIMITED), "remote": dict(_UNLIMITED)},
    "rc_joins_per_room": dict(_UNLIMITED),
    "rc_invites": {
        "per_room": dict(_UNLIMITED),
        "per_user": dict(_UNLIMITED),
        "per_issuer": dict(_UNLIMITED),
    },
    "rc_third_party_invite": dict(_UNLIMITED),
    "rc_room_creation": dict(_UNLIMITED),
    "rc_3pid_validation": dict(_UNLIMITED),
    "rc_media_create": dict(_UNLIMITED),
    "rc_presence": {"per_user": dict(_UNLIMITED)},
    "rc_delayed_event_mgmt": dict(_UNLIMITED),
    "rc_reports": dict(_UNLIMITED),
    "rc_user_directory": dict(_UNLIMITED),
    "rc_profile": dict(_UNLIMITED),
    "rc_key_requests": dict(_UNLIMITED),
}

# Servers still running when the interpreter exits are killed, so a crashed test run does not
# leave homeservers behind.
_RUNNING: weakref.WeakSet[SynapseServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_RUNNING):
        server.kill()


class SynapseError(RuntimeError):
    """The homeserver could not be set up, started or stopped (carries the log tail)."""


class MatrixHTTPError(RuntimeError):
    """A non-2xx answer from the homeserver, with the Matrix error JSON parsed."""

    def __init__(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        errcode = body.get("errcode")
        error = body.get("error")
        retry = body.get("retry_after_ms")
        self.errcode: str | None = errcode if isinstance(errcode, str) else None
        self.error: str | None = error if isinstance(error, str) else None
        self.retry_after_ms: int | None = int(retry) if isinstance(retry, int | float) else None
        super().__init__(f"{method} {path}: HTTP {status} {self.errcode or ''} {self.error or ''}")


@dataclass(frozen=True)
class MatrixUser:
    user_id: str
    localpart: str
    password: str
    access_token: str
    device_id: str


def synapse_python() -> Path:
    """The Python interpreter that has ``matrix-synapse`` installed."""
    override = os.environ.get(SYNAPSE_PYTHON_ENV)
    return Path(override) if override else DEFAULT_SYNAPSE_PYTHON


@functools.cache
def _importable(python: Path) -> bool:
    if not python.exists():
        return False
    try:
        done = subprocess.run(
            [str(python), "-c", "import synapse.app.homeserver"],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def synapse_available() -> bool:
    """Whether the Synapse Python exists and can import Synapse (cached per interpreter)."""
    return _importable(synapse_python())


def synapse_skip_reason() -> str | None:
    """None when Synapse can run; otherwise why not, for ``pytest.skip``.

    Raises SynapseError instead when ``SUPPORTBOT_TEST_REQUIRE_SYNAPSE=1`` (CI must not skip).
    """
    if synapse_available():
        return None
    reason = (
        f"Synapse is not installed at {synapse_python()} "
        f"(run `make synapse`, or set {SYNAPSE_PYTHON_ENV})"
    )
    if os.environ.get(REQUIRE_SYNAPSE_ENV, "") not in ("", "0"):
        raise SynapseError(f"{reason}; {REQUIRE_SYNAPSE_ENV} is set")
    return reason


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path.name}: missing)"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])


# No proxies, ever: every request goes straight to the loopback homeserver.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SynapseServer:
    """One Synapse process with its own directory, port and SQLite database."""

    server_name = "localhost"

    def __init__(
        self,
        workdir: Path,
        *,
        rate_limits: Mapping[str, Any] | None = None,
        python: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.python = Path(python) if python is not None else synapse_python()
        self.port = free_port()  # fixed for the life of the object, so restarts keep it
        self.base_url = f"http://{HOST}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.rate_limits: dict[str, Any] = {}
        self.set_rate_limits(rate_limits or {}, restart=False)
        self.config_path = self.workdir / "homeserver.yaml"
        self.overrides_path = self.workdir / "overrides.yaml"
        self.log_config_path = self.workdir / "log.config"
        self.log_path = self.workdir / "homeserver.log"
        self.output_path = self.workdir / "synapse.out"
        self.database_path = self.workdir / "homeserver.db"
        self._shared_secret = secrets.token_hex(32)
        self._txn = 0
        # retry_after_ms of every 429 the helpers slept through (tests assert on it).
        self.rate_limit_hits: list[int] = []

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start Synapse (in its own process group) and wait until it serves client requests."""
        if self.running:
            raise SynapseError(f"Synapse on {self.base_url} is already running")
        self._reap()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self._generate_config()
        self._write_overrides()
        with self.output_path.open("ab") as out:
            self._process = subprocess.Popen(
                [
                    str(self.python),
                    "-m",
                    "synapse.app.homeserver",
                    "-c",
                    str(self.config_path),
                    "-c",
                    str(self.overrides_path),
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                _RUNNING.discard(self)
                raise SynapseError(f"Synapse exited with {code} during start-up\n{self.logs()}")
            try:
                self.request("GET", "/_matrix/client/versions", timeout=2)
                return
            except (OSError, MatrixHTTPError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise SynapseError(
                    f"Synapse did not answer on {self.base_url} within {timeout:.0f} s\n"
                    f"{self.logs()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the process group, wait, then SIGKILL what is left."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a paused server must wake to see its SIGTERM
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._process.wait(10)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process group: a crash, with no chance to clean up."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._signal(signal.SIGKILL)
            self._process.wait(10)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP the process group: connections are accepted (by the kernel) and never
        answered, as with a hung server or a dead network path."""
        assert self._process is not None and self._process.poll() is None
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`: the server answers what waited meanwhile."""
        assert self._process is not None
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def set_rate_limits(self, rate_limits: Mapping[str, Any], *, restart: bool = True) -> None:
        """Merge ``rc_*`` settings over the (very high) defaults; restart a running server."""
        unknown = [key for key in rate_limits if not key.startswith("rc_")]
        if unknown:
            raise ValueError(f"not Synapse rate-limit keys: {unknown}")
        self.rate_limits = _merge(DEFAULT_RATE_LIMITS, rate_limits)
        if restart and self.running:
            self.restart()

    def logs(self, lines: int = 40) -> str:
        """The tails of Synapse's console output and its log file."""
        return f"{_tail(self.output_path, lines)}\n{_tail(self.log_path, lines)}"

    def _signal(self, sig: signal.Signals) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    def _reap(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None
            _RUNNING.discard(self)

    def _generate_config(self) -> None:
        done = subprocess.run(
            [
                str(self.python),
                "-m",
                "synapse.app.homeserver",
                "--generate-config",
                "--server-name",
                self.server_name,
                "--config-path",
                str(self.config_path),
                "--data-directory",
                str(self.workdir),
                "--report-stats=no",
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise SynapseError(
                f"synapse --generate-config failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def _write_overrides(self) -> None:
        # JSON is YAML, so the standard library writes both files.  Synapse merges the config
        # files top-level key by top-level key, later files winning.
        log_config = {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "encoding": "utf8",
                }
            },
            "loggers": {
                "synapse.storage.SQL": {"level": "WARNING"},
                "synapse.access": {"level": "WARNING"},
                "twisted": {"level": "WARNING"},
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        overrides: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": f"{self.base_url}/",
            "pid_file": str(self.workdir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [HOST],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.database_path)}},
            "media_store_path": str(self.workdir / "media_store"),
            "log_config": str(self.log_config_path),
            "report_stats": False,
            "enable_metrics": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "enable_registration": False,
            "registration_shared_secret": self._shared_secret,
            "url_preview_enabled": False,
            "room_list_publication_rules": [{"action": "allow"}],
            **self.rate_limits,
        }
        self.log_config_path.write_text(json.dumps(log_config, indent=2), encoding="utf-8")
        self.overrides_path.write_text(json.dumps(overrides, indent=2), encoding="utf-8")

    # -- HTTP --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        user: MatrixUser | None = None,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str | int] | None = None,
        ride_rate_limits: bool = True,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """One client-server API call; the answer's JSON (``{}`` when empty).

        429s are slept through (``retry_after_ms``, for up to a minute in all) unless
        ``ride_rate_limits`` is false; every other HTTP error raises MatrixHTTPError.
        """
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if user is not None:
            headers["Authorization"] = f"Bearer {user.access_token}"
        give_up = time.monotonic() + 60
        while True:
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with _OPENER.open(req, timeout=timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw.strip() else {}
            except urllib.error.HTTPError as err:
                with err:
                    raw = err.read()
                try:
                    parsed = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    parsed = {"error": raw.decode("utf-8", "replace")[:500]}
                error = MatrixHTTPError(
                    method, path, err.code, parsed if isinstance(parsed, dict) else {}
                )
            if not (ride_rate_limits and error.status == 429 and time.monotonic() < give_up):
                raise error
            wait_ms = error.retry_after_ms if error.retry_after_ms is not None else 1000
            self.rate_limit_hits.append(wait_ms)
            time.sleep(min(wait_ms, 10_000) / 1000 + 0.01)

    def next_txn_id(self) -> str:
        self._txn += 1
        return f"t{time.time_ns()}.{self._txn}"

    @staticmethod
    def _q(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    # -- accounts ----------------------------------------------------------------------------

    def register(
        self, localpart: str, password: str | None = None, *, admin: bool = False
    ) -> MatrixUser:
        """Create a user with the shared-secret admin API; the result is logged in.

        The registration answer already carries an access token and a device, so no separate
        login is needed; :meth:`login` gives further devices.
        """
        password = password if password is not None else secrets.token_urlsafe(16)
        path = "/_synapse/admin/v1/register"
        nonce = self.request("GET", path)["nonce"]
        signed = "\x00".join((nonce, localpart, password, "admin" if admin else "notadmin"))
        mac = hmac.new(self._shared_secret.encode(), signed.encode(), hashlib.sha1)
        answer = self.request(
            "POST",
            path,
            body={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        if "access_token" not in answer or "device_id" not in answer:
            return self.login(localpart, password)
        return MatrixUser(
            user_id=answer["user_id"],
            localpart=localpart,
            password=password,
            access_token=answer["access_token"],
            device_id=answer["device_id"],
        )

    def login(self, localpart: str, password: str) -> MatrixUser:
        """Log in with ``m.login.password``: a new device and access token."""
        answer = self.request(
            "POST",
            "/_matrix/client/v3/login",
            body={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
                "initial_device_display_name": "supportbot tests",
            },
        )
        return MatrixUser(
            user_id=answer["user_id"],
            localpart=localpart,
            password=password,
            access_token=answer["access_token"],
            device_id=answer["device_id"],
        )

    def logout(self, user: MatrixUser) -> None:
        """Invalidate the user's access token (and its device)."""
        self.request("POST", "/_matrix/client/v3/logout", user=user, body={})

    def whoami(self, user: MatrixUser) -> str:
        answer = self.request("GET", "/_matrix/client/v3/account/whoami", user=user)
        user_id: str = answer["user_id"]
        return user_id

    # -- rooms and events --------------------------------------------------------------------

    def create_room(
        self,
        user: MatrixUser,
        *,
        alias: str | None = None,
        public: bool = True,
        name: str | None = None,
    ) -> str:
        """Create a room (public: anyone may join, listed in the directory); its room id.

        ``alias`` is the alias localpart (``"keras"`` or ``"#keras:localhost"``).
        """
        body: dict[str, Any] = {
            "preset": "public_chat" if public else "private_chat",
            "visibility": "public" if public else "private",
        }
        if alias is not None:
            body["room_alias_name"] = alias.removeprefix("#").split(":", 1)[0]
        if name is not None:
            body["name"] = name
        room_id: str = self.request("POST", "/_matrix/client/v3/createRoom", user=user, body=body)[
            "room_id"
        ]
        return room_id

    def join(self, user: MatrixUser, room: str) -> str:
        """Join by room id or alias; the room id."""
        room_id: str = self.request(
            "POST", f"/_matrix/client/v3/join/{self._q(room)}", user=user, body={}
        )["room_id"]
        return room_id

    def send_event(
        self,
        user: MatrixUser,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        txn_id: str | None = None,
    ) -> str:
        """PUT a message event; its event id (same ``txn_id``: same event, sent once)."""
        txn = txn_id if txn_id is not None else self.next_txn_id()
        path = (
            f"/_matrix/client/v3/rooms/{self._q(room_id)}/send/{self._q(event_type)}/{self._q(txn)}"
        )
        event_id: str = self.request("PUT", path, user=user, body=content)["event_id"]
        return event_id

    def send_text(
        self,
        user: MatrixUser,
        room_id: str,
        body: str,
        *,
        txn_id: str | None = None,
        mentions: list[str] | None = None,
        formatted_body: str | None = None,
        relates_to: Mapping[str, Any] | None = None,
    ) -> str:
        """An ``m.room.message``/``m.text``; ``m.mentions.user_ids`` when ``mentions`` is given."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if formatted_body is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = formatted_body
        if mentions is not None:
            content["m.mentions"] = {"user_ids": list(mentions)}
        if relates_to is not None:
            content["m.relates_to"] = dict(relates_to)
        return self.send_event(user, room_id, "m.room.message", content, txn_id)

    def edit_text(
        self,
        user: MatrixUser,
        room_id: str,
        event_id: str,
        body: str,
        *,
        formatted_body: str | None = None,
    ) -> str:
        """An edit (``m.replace``) of ``event_id`` to ``body``, as clients send it: the new
        text in ``m.new_content``, a ``* ...`` fallback for clients without edits."""
        new: dict[str, Any] = {"msgtype": "m.text", "body": body}
        content: dict[str, Any] = {"msgtype": "m.text", "body": f"* {body}"}
        if formatted_body is not None:
            new.update(format="org.matrix.custom.html", formatted_body=formatted_body)
            content.update(format="org.matrix.custom.html", formatted_body=f"* {formatted_body}")
        content["m.new_content"] = new
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": event_id}
        return self.send_event(user, room_id, "m.room.message", content)

    def messages(
        self,
        user: MatrixUser,
        room_id: str,
        *,
        limit: int = 100,
        event_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` events of the room (``/messages``, dir=b), oldest first.

        ``event_type`` keeps only events of that type (filtered after fetching).
        """
        answer = self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{self._q(room_id)}/messages",
            user=user,
            query={"dir": "b", "limit": limit},
        )
        events: list[dict[str, Any]] = list(reversed(answer.get("chunk", [])))
        if event_type is not None:
            events = [event for event in events if event.get("type") == event_type]
        return events

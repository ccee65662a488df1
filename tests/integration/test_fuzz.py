"""Property-based fuzzing (hypothesis) of everything a stranger controls.

Generated hostile input goes through the real code: Matrix events (missing keys, wrong types,
huge bodies, odd relations, extreme numbers, lone surrogates from undecodable bytes) through
``parse_event`` and the service's handler path on a real SQLite store; ``threads import``
lines; the dashboard's form posts (signed in, with the CSRF token); the local room's posts.
Only the retrieval step is the fake answerer of ``tests/room/test_service_units.py``: what is
fuzzed here is parsing, storing and handling, not ranking.

Properties: nothing raises except the documented error types; parsing is total (an event or
``None``); every valid event is stored exactly once and reads back as parsed; no page answers
500. The default run is a few hundred examples per property; ``-m slow`` pushes 10,000
generated events through ``parse_event`` and the handler (BENCHMARKS.md records a run).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.chat.events import RoomEvent, parse_event, storable_text
from bot.importers.past_answers import ThreadImportError, import_threads
from bot.metrics import Metrics
from bot.room.service import RoomService
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.local_room import LocalRoom
from bot.store.models import RoomEventRow
from bot.store.past_answers import PastAnswerStore
from bot.store.room_store import RoomStore
from bot.web.app import build_app
from bot.web.context import WebContext
from bot.web.room import CSRF_COOKIE
from tests.room.test_service_units import BOT, FakeAnswer, FakeTransport
from tests.web.web_helpers import PASSWORD, add_user, csrf_in, login

# The default run stays short; the slow test sets its own example count. No example database:
# a run leaves nothing behind in the checkout, and CI sees fresh examples every time.
settings.register_profile(
    "supportbot",
    max_examples=int(os.environ.get("SUPPORTBOT_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("supportbot")

ROOM = "!fuzz:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
MAINTAINER = "@maria:example.org"
NOW_MS = int(time.time() * 1000)

# --- strategies ----------------------------------------------------------------------------------
EXTREME_INTS = st.sampled_from(
    [0, -1, 1, 2**31 - 1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]
)
numbers = st.one_of(
    st.integers(),
    EXTREME_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
# Lone surrogates are what undecodable bytes become in a str (surrogateescape); control
# characters, line separators and NUL are what a hostile client types.
hostile_chars = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.characters(categories=["Cc", "Cf", "Zl", "Zp"]),
    st.sampled_from(["\x00", "\ufeff", "\u202e", "<", "&", "`", "*", "[", "]", "(", ")", "\\"]),
)
hostile_text = st.one_of(
    st.text(hostile_chars, max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
json_values = st.recursive(
    st.none() | numbers | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)
# Event ids from a small range, so batches repeat, reply to, edit and react to each other
# (and to themselves); some hostile.
event_ids = st.one_of(
    st.integers(0, 8).map(lambda n: f"$e{n}:example.org"),
    st.integers(0, 8).map(lambda n: f"$e{n}:example.org"),
    hostile_text.filter(bool),
)
senders = st.one_of(st.sampled_from([ALICE, BOB, MAINTAINER, BOT]), hostile_text)
huge = st.integers(60_000, 200_000).map(lambda n: "keras-bot: how do I " + "x" * n + "?")
bodies = st.one_of(
    st.sampled_from(
        [
            "keras-bot: how do I save a model?",
            "how do I freeze layers in keras?",
            "thanks!",
            "+1",
            "@keras-bot ?",
            "",
        ]
    ),
    hostile_text.map(lambda t: f"keras-bot: {t}?"),
    hostile_text,
    huge,
)
relations = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "rel_type": st.one_of(
                st.sampled_from(["m.thread", "m.replace", "m.annotation", "m.reference"]),
                json_values,
            ),
            "event_id": st.one_of(event_ids, json_values),
            "key": st.one_of(st.sampled_from(["✅", "👍", "👎", "❌"]), json_values),
            "m.in_reply_to": st.one_of(
                st.fixed_dictionaries({"event_id": st.one_of(event_ids, json_values)}),
                json_values,
            ),
            "is_falling_back": json_values,
        },
    ),
)
contents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "body": st.one_of(bodies, json_values),
            "msgtype": st.one_of(st.sampled_from(["m.text", "m.notice", "m.emote"]), json_values),
            "format": st.one_of(st.just("org.matrix.custom.html"), json_values),
            "formatted_body": st.one_of(hostile_text, json_values),
            "m.relates_to": relations,
            "m.new_content": st.one_of(
                st.fixed_dictionaries({"body": st.one_of(bodies, json_values)}), json_values
            ),
            "m.mentions": st.one_of(
                st.fixed_dictionaries(
                    {"user_ids": st.lists(st.one_of(senders, json_values), max_size=4)}
                ),
                json_values,
            ),
            "redacts": st.one_of(event_ids, json_values),
        },
    ),
)


def timestamps() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(NOW_MS - 10**10, NOW_MS), numbers, json_values)


hostile_events = st.fixed_dictionaries(
    {
        "type": st.one_of(
            st.sampled_from(["m.room.message"] * 6 + ["m.reaction", "m.room.redaction"]),
            st.sampled_from(["m.room.member", "m.room.power_levels", "m.sticker"]),
            json_values,
        )
    },
    optional={
        "event_id": event_ids,
        "sender": senders,
        "content": contents,
        "origin_server_ts": timestamps(),
        "redacts": st.one_of(event_ids, json_values),
        "state_key": json_values,
        "unsigned": json_values,
    },
)
room_ids = st.integers(0, 8).map(lambda n: f"$e{n}:example.org")
people = st.sampled_from([ALICE, BOB, MAINTAINER, BOT])
# Well-formed on the outside, odd inside: these reach the answer and learning paths.
plausible_messages = st.fixed_dictionaries(
    {
        "type": st.just("m.room.message"),
        "event_id": room_ids,
        "sender": people,
        "origin_server_ts": timestamps(),
        "content": st.fixed_dictionaries(
            {"msgtype": st.just("m.text"), "body": bodies},
            optional={
                "m.relates_to": st.one_of(
                    st.fixed_dictionaries(
                        {
                            "rel_type": st.sampled_from(["m.thread", "m.replace"]),
                            "event_id": room_ids,
                        }
                    ),
                    st.fixed_dictionaries(
                        {"m.in_reply_to": st.fixed_dictionaries({"event_id": room_ids})}
                    ),
                    relations,
                ),
                "m.mentions": st.fixed_dictionaries({"user_ids": st.lists(people, max_size=2)}),
                "format": st.just("org.matrix.custom.html"),
                "formatted_body": hostile_text,
                "m.new_content": st.fixed_dictionaries({"body": bodies}),
            },
        ),
    }
)
plausible_reactions = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["m.reaction", "m.room.redaction"]),
        "event_id": room_ids,
        "sender": people,
        "origin_server_ts": timestamps(),
        "redacts": room_ids,
        "content": st.fixed_dictionaries(
            {
                "m.relates_to": st.fixed_dictionaries(
                    {
                        "rel_type": st.just("m.annotation"),
                        "event_id": room_ids,
                        "key": st.sampled_from(["✅", "👍", "👎"]),
                    }
                )
            }
        ),
    }
)
raw_events = st.one_of(plausible_messages, plausible_reactions, hostile_events)


# --- parse_event ---------------------------------------------------------------------------------
def _check_types(event: RoomEvent) -> None:
    """What the store and the handler rely on: the declared types, nothing else."""
    for name in ("room_id", "event_id", "sender", "event_type", "body", "origin"):
        assert isinstance(getattr(event, name), str), name
    for name in ("msgtype", "formatted_body", "rel_type", "relates_to", "in_reply_to"):
        value = getattr(event, name)
        assert value is None or isinstance(value, str), name
    assert isinstance(event.origin_ts, int) and not isinstance(event.origin_ts, bool)
    assert all(isinstance(u, str) for u in event.mentions)


def _is_valid_message(raw: Mapping[str, Any]) -> bool:
    return (
        raw.get("type") == "m.room.message"
        and isinstance(raw.get("event_id"), str)
        and isinstance(raw.get("sender"), str)
    )


@given(raw=st.one_of(raw_events, st.dictionaries(hostile_text, json_values, max_size=6)))
def test_parse_event_is_total(raw: dict[str, Any]) -> None:
    """An event or None, never an exception; a message with an id and a sender is kept."""
    event = parse_event(ROOM, raw)
    if event is None:
        assert not _is_valid_message(raw)
        return
    _check_types(event)
    assert event.event_id == storable_text(raw["event_id"])
    assert event.sender == storable_text(raw["sender"])
    for value in (event.event_id, event.sender, event.body, event.formatted_body or ""):
        value.encode("utf-8")  # storable and servable: no lone surrogate, no NUL
        assert "\x00" not in value
    assert event.event_type == raw["type"]


@example(ts=2**53 - 1)  # the case
@given(ts=numbers)
def test_impossible_timestamps_become_the_receive_time(ts: Any) -> None:
    before = int(time.time() * 1000)
    raw = {"type": "m.room.message", "event_id": "$t", "sender": ALICE, "origin_server_ts": ts}
    event = parse_event(ROOM, raw)
    after = int(time.time() * 1000)
    assert event is not None
    limit = after + 86_400_000
    plausible = isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts <= limit
    if plausible:
        assert event.origin_ts == ts
    elif isinstance(ts, float) and ts.is_integer() and 0 <= ts <= limit:
        assert event.origin_ts in (int(ts), *range(before, after + 1))  # either reading is fair
    else:
        assert before <= event.origin_ts <= after


def test_lone_surrogates_and_nul_are_replaced_not_stored(database_url: str) -> None:
    """Regression (found by the fuzzer): an event with a lone surrogate in its text (what a
    JSON ``\\ud800`` escape decodes to) made SQLite's UTF-8 encoder raise in ``persist_batch``,
    which failed the whole sync batch and stopped the reader. PostgreSQL refuses NUL too."""
    raw = {
        "type": "m.room.message",
        "event_id": "$s\ud800:example.org",
        "sender": "@\udcff:example.org",
        "origin_server_ts": 1,
        "content": {
            "body": "keras-bot: how\ud83d do I\x00 save?",
            "msgtype": "m.\udc80text",
            "format": "org.matrix.custom.html",
            "formatted_body": "<b>\udfff</b>",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$root\udc00"},
            "m.mentions": {"user_ids": [BOT, "@\ud800:x"]},
        },
    }
    event = parse_event(ROOM, raw)
    assert event is not None
    assert event.body == "keras-bot: how\ufffd do I\ufffd save?"
    assert event.event_id == "$s\ufffd:example.org" and event.sender == "@\ufffd:example.org"
    assert event.relates_to == "$root\ufffd" and event.mentions == (BOT, "@\ufffd:x")
    db = Database(database_url)
    try:
        db.create_schema()
        store = RoomStore(db)
        assert store.persist_batch([event], "s1") == [event]
        assert store.event(event.event_id) == event
    finally:
        db.close()


# --- the handler path: parse, persist, claim, handle, mark -------------------------------------
@dataclass
class Tally:
    generated: int = 0
    parsed: int = 0
    stored: int = 0
    handled: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class Harness:
    """One RoomService on one database for a whole property run, fed as its reader and
    answer loop feed it (persist the batch, then claim, handle and mark each fresh event)."""

    def __init__(self, tmp_path: Path, url: str | None = None) -> None:
        self.db = Database(url or f"sqlite:///{tmp_path / 'fuzz.db'}")
        self.db.create_schema()
        self.store = RoomStore(self.db)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-fuzz")
        self.service = RoomService(
            load_settings(
                data_dir=tmp_path,
                maintainers=[MAINTAINER],
                user_cooldown_seconds=0,
                room_replies_per_minute=1_000_000,
                backoff_initial_seconds=0.001,
                backoff_max_seconds=0.004,
            ),
            FakeTransport(),
            self.store,
            FakeAnswer(),
            executor=self.executor,
        )
        self.loop = asyncio.new_event_loop()
        self.stored: dict[str, RoomEvent] = {}
        self.tally = Tally()

    def close(self) -> None:
        self.loop.close()
        self.executor.shutdown(wait=True)
        self.db.close()

    def feed(self, batch: list[dict[str, Any]]) -> None:
        # Ids repeat and point at each other within a batch; each batch gets its own ids, or
        # after a few examples everything would be a replay of stored events.
        batch = [_namespaced(raw, f"$b{self.tally.generated}-") for raw in batch]
        self.tally.generated += len(batch)
        parsed = [e for e in (parse_event(ROOM, raw) for raw in batch) if e is not None]
        self.tally.parsed += len(parsed)
        for event in parsed:
            _check_types(event)
        expected: dict[str, RoomEvent] = {}
        for event in parsed:
            if event.event_id not in self.stored:
                expected.setdefault(event.event_id, event)
        fresh = self.store.persist_batch(parsed, f"s{self.tally.generated}")
        # Every valid event is stored exactly once: new ids come back once, in batch order;
        # a repeated id (in this batch or an earlier one) is not offered again.
        assert [e.event_id for e in fresh] == list(expected)
        self.stored.update(expected)
        self.tally.stored += len(fresh)
        for event in fresh:
            outcome = self.loop.run_until_complete(self._process(event))
            assert isinstance(outcome, str)
            self.tally.handled += 1
            self.tally.outcomes[outcome.split(":", 1)[0]] += 1
        for event_id in {e.event_id for e in parsed}:
            back = self.store.event(event_id)
            assert back is not None and back == _as_stored(self.stored[event_id])

    async def _process(self, event: RoomEvent) -> str | None:
        service = self.service
        assert await service.claims.claim(event)
        outcome = await service.handler.handle(event)  # any exception fails the property: a crash
        assert outcome is not None
        await asyncio.to_thread(
            service.store.mark_handled, event.event_id, outcome.code, service.worker_id
        )
        return outcome.code


def _namespaced(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return value.replace("$e", prefix + "e")
    if isinstance(value, list):
        return [_namespaced(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: _namespaced(v, prefix) for k, v in value.items()}
    return value


def _as_stored(event: RoomEvent) -> RoomEvent:
    """The event as its row keeps it: short protocol fields are cut to their column length."""
    clipped: dict[str, Any] = {}
    for f in fields(RoomEvent):
        value = getattr(event, f.name)
        column = getattr(RoomEventRow, f.name, None)
        length = getattr(getattr(column, "type", None), "length", None)
        if isinstance(value, str) and length and f.name in _CLIPPED:
            value = value[:length]
        clipped[f.name] = value
    return RoomEvent(**clipped)


_CLIPPED = ("event_type", "msgtype", "rel_type", "relates_to", "in_reply_to")


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.chdir(tmp_path)  # no stray .env or supportbot.toml
    h = Harness(tmp_path)
    yield h
    h.close()


batches = st.lists(raw_events, min_size=1, max_size=12)


def test_generated_events_survive_parse_and_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The default run, on SQLite and on PostgreSQL (which refuses NUL in text)."""
    monkeypatch.chdir(tmp_path)
    harness = Harness(tmp_path, database_url)
    try:
        _feed_generated(harness)
    finally:
        harness.close()


def _feed_generated(harness: Harness) -> None:
    def message(n: int, sender: str, body: str) -> dict[str, Any]:
        return {
            "type": "m.room.message",
            "event_id": f"$e{n}:example.org",
            "sender": sender,
            "origin_server_ts": NOW_MS,
            "content": {"msgtype": "m.text", "body": body},
        }

    # One batch that surely reaches each checked outcome, however few examples run.
    @example(
        batch=[
            message(0, ALICE, "keras-bot: how do I save a model?"),
            message(1, BOT, "a notice of ours"),
            message(2, BOB, "+1"),
        ]
    )
    @given(batch=batches)
    def feed(batch: list[dict[str, Any]]) -> None:
        harness.feed(batch)

    feed()
    outcomes = harness.tally.outcomes
    # The generator reaches the interesting paths, not only rejections.
    assert outcomes["replied"] and outcomes["ignored"] and outcomes["not-a-question"], outcomes


def test_handler_takes_impossible_timestamps(harness: Harness) -> None:
    @example(ts=2**53 - 1, threaded=True)  # the case
    @example(ts=2**64, threaded=False)
    @given(ts=st.one_of(EXTREME_INTS, st.integers()), threaded=st.booleans())
    def feed(ts: int, threaded: bool) -> None:
        content: dict[str, Any] = {"msgtype": "m.text", "body": "keras-bot: how do I save?"}
        if threaded:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": "$e0:example.org"}
        raw = {"type": "m.room.message", "event_id": "$e1:example.org", "sender": ALICE}
        harness.feed([{**raw, "origin_server_ts": ts, "content": content}])

    feed()


BIG_RUN_EVENTS = 10_000
BIG_RUN_BATCH = 8


@pytest.mark.slow
def test_ten_thousand_generated_events(harness: Harness) -> None:
    """The issue's bar: 10,000 generated events through parse_event and the handler with no
    crash (any exception fails the property) and every valid event stored once."""
    started = time.monotonic()

    @settings(max_examples=BIG_RUN_EVENTS // BIG_RUN_BATCH)
    @given(batch=st.lists(raw_events, min_size=BIG_RUN_BATCH, max_size=8))
    def feed(batch: list[dict[str, Any]]) -> None:
        harness.feed(batch)

    feed()
    tally = harness.tally
    # Hypothesis may replay an example; the bar is on what went through, not on examples.
    assert tally.generated >= BIG_RUN_EVENTS
    print(
        f"\nfuzz: {tally.generated} generated events, {tally.parsed} parsed, "
        f"{tally.stored} stored, {tally.handled} handled, 0 crashes, "
        f"{time.monotonic() - started:.0f} s; outcomes {dict(tally.outcomes.most_common())}"
    )


# --- threads import ------------------------------------------------------------------------------
record_fields = st.fixed_dictionaries(
    {},
    optional={
        "question": st.one_of(hostile_text, bodies, json_values),
        "answer": st.one_of(hostile_text, json_values),
        "url": st.one_of(
            st.integers(0, 50).map(lambda n: f"https://gitter.im/keras-team/keras?at={n}"),
            hostile_text,
            json_values,
        ),
        "asked_by": st.one_of(senders, json_values),
        "answered_by": st.one_of(senders, json_values),
        "created_at": st.one_of(
            st.sampled_from(["2024-01-02T03:04:05Z", "9999-12-31T23:59:59", "0001-01-01"]),
            hostile_text,
            json_values,
        ),
        "source": st.one_of(st.sampled_from(["gitter", "so"]), hostile_text, json_values),
        # Gitter export fields, so auto-detection sees both formats.
        "fromUser": st.one_of(st.fixed_dictionaries({"username": hostile_text}), json_values),
        "parentId": json_values,
        "sent": json_values,
        "text": st.one_of(hostile_text, json_values),
        "id": json_values,
    },
)
import_lines = st.one_of(
    record_fields.map(lambda r: json.dumps(r).encode()),  # ASCII, surrogates as \\u escapes
    record_fields.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "replace")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),  # not JSON, not UTF-8
    st.sampled_from([b"", b"\xef\xbb\xbf{}", b"[", b"{", b"null", b"\xff\xfe{}"]),
)


def test_threads_import_takes_any_lines(tmp_path: Path) -> None:
    """Any file imports or fails with ThreadImportError; importing it again changes nothing."""
    db = Database(f"sqlite:///{tmp_path / 'import.db'}")
    db.create_schema()
    path = tmp_path / "threads.jsonl"

    @given(
        lines=st.lists(import_lines, min_size=1, max_size=8),
        fmt=st.sampled_from(["auto", "jsonl", "gitter"]),
    )
    def run(lines: list[bytes], fmt: Any) -> None:
        path.write_bytes(b"\n".join(lines))
        try:
            first = import_threads(db, path, fmt=fmt)
        except ThreadImportError:
            return
        assert first.imported >= 0
        again = import_threads(db, path, fmt=fmt)
        assert again.new == 0 and again.updated == 0
        assert again.imported == first.imported

    try:
        run()
    finally:
        db.close()


# --- the dashboard's forms -----------------------------------------------------------------------
class AppDriver:
    """One aiohttp test server and client on one event loop for a whole property run."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: TestClient[Any, Any] = TestClient(TestServer(app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def _raw(text: str) -> bytes:
    """The bytes a hostile client sends for ``text``: undecodable bytes (surrogateescape) as
    themselves, any other lone surrogate as its invalid three-byte UTF-8 form."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _form(fields: dict[str, str]) -> bytes:
    """A urlencoded body of raw bytes: not necessarily valid UTF-8."""
    return urllib.parse.urlencode({_raw(k): _raw(v) for k, v in fields.items()}).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
form_text = st.one_of(hostile_text, st.integers(20_000, 70_000).map(lambda n: "y" * n))
ACTIONS = ("post", "answered", "dismiss", "reopen", "vote", "try")
QUESTIONS = ["$q0:example.org", "$q1:example.org"]
question_ids = st.one_of(
    st.sampled_from(QUESTIONS),  # twice: most posts reach a real question
    st.sampled_from(QUESTIONS),
    st.just("$missing"),
    hostile_text.filter(lambda t: t.strip("./") != ""),
)


def test_dashboard_forms_take_any_post(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signed in, with the right CSRF token: any form on any question id answers a page, a
    redirect or a 4xx/5xx it means (never 500); without the token nothing changes (403)."""
    monkeypatch.chdir(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'web.db'}")
    db.create_schema()
    store = RoomStore(db)
    posted: list[tuple[str, str, str]] = []

    async def post_reply(event_id: str, body: str, user: str) -> None:
        posted.append((event_id, body, user))

    ctx = WebContext(
        settings=load_settings(data_dir=tmp_path, login_max_failures=3),
        db=db,
        store=store,
        metrics=Metrics(),
        ready=lambda: (True, "fuzz"),
        post_reply=post_reply,
        answer=FakeAnswer(),
    )
    add_user(ctx)
    for n in range(2):
        event = parse_event(
            ROOM,
            {
                "type": "m.room.message",
                "event_id": f"$q{n}:example.org",
                "sender": ALICE,
                "origin_server_ts": NOW_MS,
                "content": {"msgtype": "m.text", "body": f"how do I save a model {n}?"},
            },
        )
        assert event is not None
        store.persist_batch([event], None)
        store.save_question(
            event,
            event.body,
            mentioned=True,
            confidence=0.5,
            suggestion="See [Saving](https://keras.io/api/models/model_saving_apis/).",
            sources=[],
            index_version="v-fuzz",
            status="suggested",
        )
    driver = AppDriver(build_app(ctx))

    async def sign_in() -> str:
        response = await login(driver.client)
        assert response.status == 303
        page = await driver.client.get("/queue")
        assert page.status == 200
        return csrf_in(await page.text())

    token = driver.run(sign_in())
    statuses: Counter[int] = Counter()

    vote_up = {"action": "vote", "body": "", "vote": "up", "extra": {}}

    @example(event_id=QUESTIONS[0], with_token=True, **vote_up)  # surely one 303
    @example(event_id=QUESTIONS[0], with_token=False, **vote_up)  # and one 403
    @given(
        event_id=question_ids,
        action=st.sampled_from(ACTIONS),
        body=form_text,
        vote=st.one_of(st.sampled_from(["up", "down", "none"]), hostile_text),
        extra=st.dictionaries(hostile_text, hostile_text, max_size=3),
        with_token=st.booleans(),
    )
    def post(
        event_id: str, action: str, body: str, vote: str, extra: dict[str, str], with_token: bool
    ) -> None:
        fields = {**extra, "body": body, "vote": vote, "q": body}
        fields["csrf_token"] = token if with_token else "x" * len(token)
        path = "/questions/" + urllib.parse.quote(_raw(event_id), safe="") + "/" + action
        if action == "try":  # the try-it page: a question, answered, nothing stored
            path = "/try"

        async def go() -> tuple[int, int]:
            before = len(posted)
            response = await driver.client.post(
                path, data=_form(fields), headers=FORM, allow_redirects=False
            )
            await response.read()
            return response.status, len(posted) - before

        status, new_posts = driver.run(go())
        statuses[status] += 1
        assert status != 500
        if not with_token:
            assert status == 403 and new_posts == 0
        elif action == "try":
            assert status in (200, 400), status
        else:
            assert status in (303, 400, 404, 413), status
        for page in ("/queue", "/questions/$q0:example.org", "/questions/$q1:example.org"):
            response = driver.run(driver.client.get(page))
            assert response.status == 200, page

    try:
        post()
    finally:
        driver.close()
        db.close()
    assert statuses[303] and statuses[403], statuses  # both paths were exercised


def test_login_form_takes_any_post(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name, password and ``next``: a 401 / 403 / 429 page, or (right password) a redirect
    that stays on this site; never a 500."""
    monkeypatch.chdir(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'login.db'}")
    db.create_schema()
    ctx = WebContext(
        settings=load_settings(data_dir=tmp_path, login_max_failures=10_000),
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, "fuzz"),
    )
    add_user(ctx)
    driver = AppDriver(build_app(ctx))

    async def login_token() -> str:
        page = await driver.client.get("/login")
        assert page.status == 200
        return csrf_in(await page.text())

    statuses: Counter[int] = Counter()

    @settings(max_examples=min(60, settings.default.max_examples))  # scrypt per attempt
    @example(name="maria", password=PASSWORD, next_path="//evil.example", with_token=True)
    @example(name="maria", password="wrong password", next_path="/queue", with_token=True)
    @example(name="maria", password=PASSWORD, next_path="/queue", with_token=False)
    @given(
        name=st.one_of(st.just("maria"), hostile_text),
        password=st.one_of(st.just(PASSWORD), hostile_text),
        next_path=st.one_of(
            st.sampled_from(["/queue", "//evil.example", "/\\evil", "https://evil.example/"]),
            hostile_text,
        ),
        with_token=st.booleans(),
    )
    def post(name: str, password: str, next_path: str, with_token: bool) -> None:
        async def go() -> tuple[int, str]:
            driver.client.session.cookie_jar.clear()
            token = await login_token()
            form = {
                "csrf_token": token if with_token else "",
                "name": name,
                "password": password,
                "next": next_path,
            }
            response = await driver.client.post(
                "/login", data=_form(form), headers=FORM, allow_redirects=False
            )
            await response.read()
            return response.status, response.headers.get("Location", "")

        status, location = driver.run(go())
        statuses[status] += 1
        if not with_token:
            assert status == 403
        elif status == 303:
            assert (name.strip(), password) == ("maria", PASSWORD)
            target = urllib.parse.urlsplit(location)
            assert not target.scheme and not target.netloc and location.startswith("/")
            assert not location.startswith(("//", "/\\")), location
        else:
            assert status == 401, status

    try:
        post()
    finally:
        driver.close()
        db.close()
    assert statuses[303] and statuses[401] and statuses[403], statuses


# --- the local room's posts ----------------------------------------------------------------------
def test_local_room_takes_any_post(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Any post is stored (201) once per transaction id, or refused with a 4xx; the page and
    its poll keep answering; every stored event parses into a RoomEvent. On SQLite and on
    PostgreSQL, whose text and JSON columns refuse NUL."""
    monkeypatch.chdir(tmp_path)
    db = Database(database_url)
    db.create_schema()
    room = LocalRoom(db, "!local:supportbot.localhost", "@supportbot:supportbot.localhost")
    ctx = WebContext(
        settings=load_settings(data_dir=tmp_path),
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, "fuzz"),
        local_room=room,
    )
    driver = AppDriver(build_app(ctx))

    async def token() -> str:
        page = await driver.client.get("/room")
        assert page.status == 200
        found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert found
        return found.group(1)

    csrf = driver.run(token())
    root = room.post("@alice:supportbot.localhost", "how do I freeze layers?")  # to reply under
    accepted: dict[tuple[str, str], str] = {}  # (user, txn id) -> event id
    statuses: Counter[int] = Counter()
    good = {"name": "alice", "body": "keras-bot: hello?", "mention": True, "as_json": True}

    @example(thread_root=root, txn_id="t1", **good)  # surely one accepted post
    @example(thread_root="", txn_id="t1", **good)  # its retry: the same event
    @example(thread_root="", txn_id="", **{**good, "body": ""})  # and one refused
    @example(thread_root="", txn_id="", **{**good, "body": "a\x00b\ud800c\udcff"})
    @given(
        name=st.one_of(st.sampled_from(["alice", "Bob", ""]), hostile_text),
        body=form_text,
        thread_root=st.one_of(st.just(""), st.just(root), hostile_text),
        txn_id=st.one_of(st.just(""), st.integers(0, 20).map(lambda n: f"t{n}"), hostile_text),
        mention=st.booleans(),
        as_json=st.booleans(),
    )
    def post(
        name: str, body: str, thread_root: str, txn_id: str, mention: bool, as_json: bool
    ) -> None:
        fields = {"csrf": csrf, "name": name, "body": body, "thread_root": thread_root}
        if txn_id:
            fields["txn_id"] = txn_id
        if mention:
            fields["mention_bot"] = "on"
        headers = {**FORM, **({"Accept": "application/json"} if as_json else {})}

        async def go() -> tuple[int, Any]:
            driver.client.session.cookie_jar.update_cookies({CSRF_COOKIE: csrf})
            response = await driver.client.post(
                "/room/messages", data=_form(fields), headers=headers, allow_redirects=False
            )
            payload = await response.json() if as_json and response.status < 500 else None
            return response.status, payload

        status, payload = driver.run(go())
        statuses[status] += 1
        assert status in (201, 303, 400, 413, 429), status
        if status == 201 and txn_id:
            event_id = payload["event_id"]
            key = (room.user_id_for(name), txn_id)  # the name was accepted
            if key in accepted:
                assert accepted[key] == event_id  # a retried send: the same event
            accepted[key] = event_id
        for page in ("/room", "/room/events?since=0"):
            response = driver.run(driver.client.get(page))
            assert response.status == 200, page

    try:
        post()
        rows = room.events_after(0, 100_000)
        ids = [raw["event_id"] for _, raw in rows]
        assert len(ids) == len(set(ids))
        for _, raw in rows:
            event = parse_event(room.room_id, raw)
            assert event is not None
            _check_types(event)
    finally:
        driver.close()
        db.close()
    assert (statuses[201] or statuses[303]) and statuses[400], statuses


def test_import_line_with_a_surrogate_escape_is_imported(tmp_path: Path) -> None:
    """Regression (found by the fuzzer): a JSON line whose text holds a ``\\ud800`` escape
    ended `threads import` with a UnicodeEncodeError traceback from the database."""
    path = tmp_path / "threads.jsonl"
    line = {"question": "why \ud800?", "answer": "a\x00b", "url": "https://example.org/t/1"}
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    db = Database(f"sqlite:///{tmp_path / 'import.db'}")
    try:
        db.create_schema()
        report = import_threads(db, path)
        assert (report.new, report.errors) == (1, 0)
        stored = PastAnswerStore(db).get("https://example.org/t/1")
        assert stored is not None
        assert (stored.question, stored.answer) == ("why \ufffd?", "a\ufffdb")
    finally:
        db.close()


def test_local_room_ids_and_bodies_with_nul_or_surrogates(database_url: str) -> None:
    """Regression (found by the fuzzer on PostgreSQL): a room post whose thread root held a
    NUL answered 500 (PostgreSQL refuses NUL in a text parameter); a body with a lone
    surrogate raised UnicodeEncodeError in the size check."""
    from bot.chat.local_input import LocalRoomInputError

    db = Database(database_url)
    try:
        db.create_schema()
        room = LocalRoom(db, "!local:supportbot.localhost", "@supportbot:supportbot.localhost")
        alice = room.user_id_for("alice")
        for bad_root in ("\x00", "$abc\x00", "$\ud800"):
            with pytest.raises(LocalRoomInputError, match="no message"):
                room.post(alice, "hello?", thread_root=bad_root)
        assert room.event("$x\x00") is None
        event_id = room.post(alice, "a\ud800b\x00c")
        raw = room.event(event_id)
        assert raw is not None and raw["content"]["body"] == "a\ufffdb\ufffdc"
    finally:
        db.close()

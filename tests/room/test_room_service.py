"""`supportbot run` against a real Synapse: replies in threads, restarts, outages, 429, auth.

The bot runs as a real subprocess (`python -m bot run`) so that SIGKILL, SIGTERM and exit
codes are the real thing; the homeserver is a real Synapse from `.venv-synapse`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import MINI_DOCS
from tests.synapse_server import MatrixUser, SynapseServer, synapse_skip_reason

QUESTIONS = [
    "how do I stop training early when the validation loss stops improving?",
    "how can I save my whole model to one file and load it back?",
    "how do I get reproducible results with a random seed?",
    "which layers do I need for a small convnet for digits?",
    "how do I weight unbalanced classes during fit?",
]


class Bot:
    """One `supportbot run` process and its data dir (kept across restarts)."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = data_dir / "bot.log"
        self.starts = 0

    def start(self, *, wait: bool = True) -> None:
        self.starts += 1
        with self.log_path.open("a") as log:  # the child keeps its own copy of the fd
            log.write(f"\n===== start {self.starts} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        if wait:
            self.wait_for_log("listening" if self.starts == 1 else "connected to", self.starts)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, occurrences: int = 1, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(needle) >= occurrences:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"bot exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {needle!r} in the bot log:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "supportbot.db")


@pytest.fixture
def own_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A homeserver for one test alone: for tests that kill it or change its settings, so that
    no other test depends on what they did to it."""
    reason = synapse_skip_reason()
    if reason:
        pytest.skip(reason)
    with SynapseServer(tmp_path_factory.mktemp("synapse-own")) as server:
        yield server


@pytest.fixture
def make_bot(
    tmp_path: Path, synapse: SynapseServer, index_dir: Path
) -> Iterator[Callable[..., tuple[Bot, MatrixUser]]]:
    """Bots on the module's homeserver, or on the one given as ``homeserver=``."""
    bots: list[Bot] = []

    def factory(
        room_id: str,
        bot_user: MatrixUser,
        *,
        homeserver: SynapseServer | None = None,
        **extra: str,
    ) -> tuple[Bot, MatrixUser]:
        data = tmp_path / f"bot{len(bots)}"
        shutil.copytree(index_dir, data / "indexes")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
        env.update(
            {
                "SUPPORTBOT_DATA_DIR": str(data),
                "SUPPORTBOT_DEVICE": "cpu",
                "SUPPORTBOT_WEB_PORT": "0",
                "SUPPORTBOT_MATRIX_HOMESERVER": (homeserver or synapse).base_url,
                "SUPPORTBOT_MATRIX_USER_ID": bot_user.user_id,
                "SUPPORTBOT_MATRIX_ACCESS_TOKEN": bot_user.access_token,
                "SUPPORTBOT_MATRIX_ROOMS": room_id,
                "SUPPORTBOT_REPLY_THRESHOLD": "0.0",  # the tiny corpus: always answer
                "SUPPORTBOT_SYNC_TIMEOUT_MS": "2000",
                "SUPPORTBOT_USER_COOLDOWN_SECONDS": "0",
                "SUPPORTBOT_ROOM_REPLIES_PER_MINUTE": "1000",
                "SUPPORTBOT_BACKOFF_INITIAL_SECONDS": "0.2",
                "SUPPORTBOT_BACKOFF_MAX_SECONDS": "2",
                **extra,
            }
        )
        bot = Bot(data, env)
        bots.append(bot)
        return bot, bot_user

    yield factory
    for bot in bots:
        if bot.proc is not None and bot.proc.poll() is None:
            bot.proc.kill()
            bot.proc.wait()


_users = iter(range(10_000))


def new_room(synapse: SynapseServer) -> tuple[str, MatrixUser, MatrixUser, MatrixUser]:
    n = next(_users)
    bot = synapse.register(f"keras-bot-{n}")
    alice = synapse.register(f"alice-{n}")
    bob = synapse.register(f"bob-{n}")
    room_id = synapse.create_room(alice)
    synapse.join(bob, room_id)
    return room_id, bot, alice, bob


def ask(synapse: SynapseServer, user: MatrixUser, room_id: str, bot: MatrixUser, text: str) -> str:
    return synapse.send_text(user, room_id, f"{bot.localpart}: {text}", mentions=[bot.user_id])


def bot_replies(
    synapse: SynapseServer, reader: MatrixUser, room_id: str, bot: MatrixUser
) -> list[dict[str, Any]]:
    return [
        e
        for e in synapse.messages(reader, room_id, limit=1000)
        if e.get("sender") == bot.user_id and e.get("type") == "m.room.message"
    ]


def wait_replies(
    synapse: SynapseServer,
    reader: MatrixUser,
    room_id: str,
    bot: MatrixUser,
    n: int,
    timeout: float = 120,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    replies: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        replies = bot_replies(synapse, reader, room_id, bot)
        if len(replies) >= n:
            return replies
        time.sleep(0.5)
    raise AssertionError(f"{len(replies)} of {n} replies arrived")


def replied_to(reply: dict[str, Any]) -> str:
    return str(reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"])


def wait_settled(
    messages: Callable[[], list[dict[str, Any]]],
    handled: Callable[[], tuple[set[str], int]],
    timeout: float = 120,
) -> list[dict[str, Any]]:
    """Wait until the bot has nothing left to do in the room; return the room's messages.

    ``messages()`` reads the room's m.room.message events from the homeserver; ``handled()``
    reads the bot's database: the ids of the handled events and how many stored events are not
    handled yet. Settled means every message in the room (the bot's own replies too, which come
    back through /sync) is stored and handled, and nothing stored waits. A reply is sent before
    its question is marked handled, so from then on no reply can come unless someone writes:
    the positive signal instead of "wait a while for anything extra".
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = messages()
        done, waiting = handled()  # read after the room: a reply sent since is handled too
        unhandled = [e["event_id"] for e in seen if e["event_id"] not in done]
        if not unhandled and waiting == 0:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled: {unhandled} unhandled, {waiting} waiting")
        time.sleep(0.3)


def room_messages(
    synapse: SynapseServer, reader: MatrixUser, room_id: str
) -> Callable[[], list[dict[str, Any]]]:
    """``wait_settled``'s view of a (small) room."""
    return lambda: synapse.messages(reader, room_id, limit=1000, event_type="m.room.message")


def handled_in(bot: Bot) -> Callable[[], tuple[set[str], int]]:
    """``wait_settled``'s view of one bot's SQLite database."""

    def read() -> tuple[set[str], int]:
        with contextlib.closing(bot.db()) as db:
            rows = db.execute("SELECT event_id, handled_at IS NOT NULL FROM room_events").fetchall()
        return {e for e, done in rows if done}, sum(1 for _, done in rows if not done)

    return read


def test_mention_gets_a_threaded_reply_others_are_only_triaged(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    room_id, bot_user, alice, bob = new_room(synapse)
    synapse.send_text(alice, room_id, "an old question from before the bot joined?")
    bot, _ = make_bot(room_id, bot_user)
    bot.start()

    question = ask(synapse, alice, room_id, bot_user, QUESTIONS[0])
    unmentioned = synapse.send_text(bob, room_id, "How can I save my whole model to one file?")
    chatter = synapse.send_text(bob, room_id, "thanks, that worked")
    [reply] = wait_replies(synapse, alice, room_id, bot_user, 1)

    content = reply["content"]
    assert content["msgtype"] == "m.notice"
    assert content["m.relates_to"]["rel_type"] == "m.thread"
    assert content["m.relates_to"]["event_id"] == question
    assert replied_to(reply) == question
    assert content["m.mentions"] == {"user_ids": [alice.user_id]}
    assert "https://keras.io/guides/training_loops/" in content["body"]
    assert '<a href="https://keras.io/guides/training_loops/">' in content["formatted_body"]
    # The guide's code example, under its link: fenced Markdown, a python block in the HTML.
    example = 'callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)'
    assert f"   ```python\n   {example}\n" in content["body"]
    html_example = example.replace('"', "&quot;")
    assert f'<pre><code class="language-python">{html_example}' in content["formatted_body"]

    # Its own reply came back through /sync and everything in the room has been handled ...
    wait_settled(room_messages(synapse, alice, room_id), handled_in(bot))
    assert bot.stop() == 0
    with bot.db() as db:
        outcomes = dict(db.execute("SELECT event_id, outcome FROM room_events"))
        questions = dict(db.execute("SELECT event_id, status FROM questions"))
    assert outcomes[reply["event_id"]] == "ignored:own-message"  # ... and was not answered
    assert outcomes[question] == "replied"
    assert outcomes[unmentioned] == "triage" and questions[unmentioned] == "suggested"
    assert outcomes[chatter] == "not-a-question" and chatter not in questions
    assert questions[question] == "answered_bot"
    assert "history" in outcomes.values()  # the old question: stored, never answered
    assert len(bot_replies(synapse, alice, room_id, bot_user)) == 1


def test_sigkill_mid_run_loses_nothing_and_never_replies_twice(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    room_id, bot_user, alice, bob = new_room(synapse)
    bot, _ = make_bot(room_id, bot_user)
    bot.start()
    asked = [ask(synapse, alice, room_id, bot_user, QUESTIONS[0])]
    wait_replies(synapse, alice, room_id, bot_user, 1)
    for q in QUESTIONS[1:4]:
        asked.append(ask(synapse, alice, room_id, bot_user, q))
    bot.kill()  # whatever it was doing: persisting, answering, sending
    for q in QUESTIONS:
        asked.append(ask(synapse, bob, room_id, bot_user, q))  # sent while it is dead
    bot.start()
    wait_replies(synapse, alice, room_id, bot_user, len(asked))
    # Settled: every event handled, the replies that came back too; no reply can come now.
    messages = wait_settled(room_messages(synapse, alice, room_id), handled_in(bot))
    replies = [e for e in messages if e.get("sender") == bot_user.user_id]
    targets = [replied_to(r) for r in replies]
    assert sorted(targets) == sorted(asked)  # every question once, none twice
    assert bot.stop() == 0


def test_homeserver_killed_and_restarted(
    own_synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    server = own_synapse  # killed below: the module's server stays up for the other tests
    room_id, bot_user, alice, _bob = new_room(server)
    bot, _ = make_bot(room_id, bot_user, homeserver=server)
    bot.start()
    first = ask(server, alice, room_id, bot_user, QUESTIONS[0])
    wait_replies(server, alice, room_id, bot_user, 1)
    server.kill()
    bot.wait_for_log("sync failed")  # it noticed, and backs off while the server is down
    server.start()
    after = [ask(server, alice, room_id, bot_user, q) for q in QUESTIONS[1:3]]
    replies = wait_replies(server, alice, room_id, bot_user, 3)
    assert sorted(replied_to(r) for r in replies) == sorted([first, *after])
    assert "sync failed" in bot.log()
    assert bot.proc is not None and bot.proc.poll() is None  # it never gave up
    assert bot.stop() == 0


def test_gap_after_limited_timeline_is_backfilled(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    room_id, bot_user, alice, bob = new_room(synapse)
    bot, _ = make_bot(room_id, bot_user, SUPPORTBOT_SYNC_TIMELINE_LIMIT="2")
    bot.start()
    assert bot.stop() == 0  # graceful stop; the sync token stays in the database
    asked = [
        ask(synapse, alice if i % 2 else bob, room_id, bot_user, q)
        for i, q in enumerate(QUESTIONS + QUESTIONS[:3])
    ]
    bot.start()
    replies = wait_replies(synapse, alice, room_id, bot_user, len(asked))
    assert sorted(replied_to(r) for r in replies) == sorted(asked)
    assert "back-filled" in bot.log()
    assert bot.stop() == 0


def test_revoked_token_stops_with_a_clear_error(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    room_id, bot_user, _alice, _bob = new_room(synapse)
    session = synapse.login(bot_user.localpart, bot_user.password)  # a token we can revoke
    bot, _ = make_bot(room_id, session)
    bot.start()
    synapse.logout(session)
    assert bot.proc is not None
    code = bot.proc.wait(timeout=60)
    log = bot.log()
    assert code != 0
    assert "rejected the access token" in log
    assert log.count("rejected the access token") == 1  # no retry storm
    assert session.access_token not in log  # never logged

    # A bad token from the start fails before joining anything.
    bad = MatrixUser(bot_user.user_id, bot_user.localpart, "", "not-a-token", "X")
    bot2, _ = make_bot(room_id, bad)
    bot2.start(wait=False)
    assert bot2.proc is not None and bot2.proc.wait(timeout=60) != 0
    assert "rejected the access token" in bot2.log()
    assert "not-a-token" not in bot2.log()


def test_rate_limited_replies_wait_and_still_arrive(
    tmp_path_factory: pytest.TempPathFactory,
    index_dir: Path,
    make_bot: Callable[..., tuple[Bot, MatrixUser]],
) -> None:
    limits = {"rc_message": {"per_second": 0.5, "burst_count": 2}}
    with SynapseServer(tmp_path_factory.mktemp("synapse-429"), rate_limits=limits) as slow:
        room_id, bot_user, alice, _bob = new_room(slow)
        bot, _ = make_bot(room_id, bot_user, homeserver=slow)
        bot.start()
        asked = [ask(slow, alice, room_id, bot_user, q) for q in QUESTIONS[:4]]
        replies = wait_replies(slow, alice, room_id, bot_user, len(asked), timeout=180)
        assert sorted(replied_to(r) for r in replies) == sorted(asked)
        assert "ratelimited" in bot.log().lower() or "429" in bot.log()
        assert bot.stop() == 0


def test_bad_input_is_stored_and_handled_without_crashing(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    room_id, bot_user, alice, _bob = new_room(synapse)
    bot, _ = make_bot(room_id, bot_user)
    bot.start()
    hostile = [
        "",  # empty after the mention
        # Matrix caps an event at 64 KiB, so this is as enormous as a room message gets.
        "how do I fit? " + "x" * 60_000,
        "\ufffd\x01\x02 binary \ufffd\ufffd\x7f?",
        "```python\nmodel.fit(x, y, epochs=10)\n```",
        "<img src=x onerror=alert(1)> how do I <b>save</b> a model? [x](javascript:alert(1))",
        "¿Cómo guardo mi modelo en un solo archivo? 如何保存模型?",
    ]
    asked = [ask(synapse, alice, room_id, bot_user, text) for text in hostile]
    replies = wait_replies(synapse, alice, room_id, bot_user, len(asked), timeout=180)
    assert sorted(replied_to(r) for r in replies) == sorted(asked)
    for reply in replies:
        html = reply["content"]["formatted_body"]
        assert "<img" not in html and "onerror" not in html and "javascript:" not in html
    assert bot.stop() == 0
    with bot.db() as db:
        stored = dict(db.execute("SELECT event_id, length(body) FROM room_events"))
    assert all(e in stored for e in asked)
    assert stored[asked[1]] > 60_000  # stored whole, even if only a prefix is searched


def test_room_that_forbids_the_bot_stops_it_with_a_clear_error(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    n = next(_users)
    bot_user = synapse.register(f"keras-bot-{n}")
    owner = synapse.register(f"owner-{n}")
    private = synapse.create_room(owner, public=False)  # invite-only: the bot may not join
    bot, _ = make_bot(private, bot_user)
    bot.start(wait=False)
    assert bot.proc is not None and bot.proc.wait(timeout=60) != 0
    log = bot.log()
    assert "M_FORBIDDEN" in log and f"join {private}" in log
    assert log.count("M_FORBIDDEN") == 1  # stopped at once, no retries


def test_alias_is_resolved_and_joined(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    n = next(_users)
    bot_user = synapse.register(f"keras-bot-{n}")
    alice = synapse.register(f"alice-{n}")
    room_id = synapse.create_room(alice, alias=f"keras-{n}")
    bot, _ = make_bot(f"#keras-{n}:{synapse.server_name}", bot_user)
    bot.start()
    question = ask(synapse, alice, room_id, bot_user, QUESTIONS[2])
    [reply] = wait_replies(synapse, alice, room_id, bot_user, 1)
    assert replied_to(reply) == question
    assert bot.stop() == 0


# --- learning from the room (past answers) ---------------------------------------------------


def past_answers(bot: Bot) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(bot.data_dir / "supportbot.db") as db:
        try:
            rows = db.execute(
                "SELECT question_event_id, answer, answered_by, established_by FROM past_answers"
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
    return {q: (a, by, how) for q, a, by, how in rows}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def in_thread(synapse: SynapseServer, user: MatrixUser, room: str, root: str, text: str) -> str:
    return synapse.send_text(
        user, room, text, relates_to={"rel_type": "m.thread", "event_id": root}
    )


def test_maintainer_answers_become_searchable_past_answers(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    n = next(_users)
    bot_user = synapse.register(f"keras-bot-{n}")
    alice, bob, carol, dave = (
        synapse.register(f"{who}-{n}") for who in ("alice", "bob", "carol", "dave")
    )
    maint = synapse.register(f"maint-{n}")
    room_id = synapse.create_room(alice)
    for user in (bob, carol, dave, maint):
        synapse.join(user, room_id)
    bot, _ = make_bot(
        room_id,
        bot_user,
        SUPPORTBOT_MAINTAINERS=maint.user_id,
        SUPPORTBOT_PAST_ANSWERS_PUBLISH_SECONDS="0.5",
    )
    bot.start()

    # A question answered by a maintainer in a thread.
    question = synapse.send_text(
        alice, room_id, "Why do I get ValueError: Could not interpret optimizer identifier adamw?"
    )
    answer = in_thread(
        synapse,
        maint,
        room_id,
        question,
        "That error means an old Keras: upgrade to Keras 3 and pass keras.optimizers.AdamW().",
    )
    # A question answered by someone who is not a maintainer, never accepted: not used.
    other_q = synapse.send_text(carol, room_id, "How do I plot the learning curve of my model?")
    in_thread(synapse, dave, room_id, other_q, "I think you just call plt.plot somehow.")

    wait_until(lambda: question in past_answers(bot), "the mined pair")
    pair = past_answers(bot)[question]
    assert pair[1] == maint.user_id and pair[2] == "maintainer-thread"
    assert "keras.optimizers.AdamW" in pair[0]
    assert other_q not in past_answers(bot)
    bot.wait_for_log("past answers searchable in index")

    # A paraphrase, later, by someone else: the reply leads with the earlier thread.
    later = ask(
        synapse,
        bob,
        room_id,
        bot_user,
        "getting 'could not interpret optimizer identifier' for adamw, what should I do?",
    )
    [reply] = wait_replies(synapse, bob, room_id, bot_user, 1)
    assert replied_to(reply) == later
    body = reply["content"]["body"]
    permalink = f"https://matrix.to/#/{room_id}/{question}"
    assert body.startswith("This was answered here before:") or permalink in body
    assert permalink in body
    assert f"answered by {maint.user_id}" in body.replace("\\", "")

    # The asker accepts dave's answer with a reaction: now it counts.
    synapse.send_event(
        carol,
        room_id,
        "m.reaction",
        {
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": _thread_reply(synapse, carol, room_id, other_q),
                "key": "✅",
            }
        },
    )
    wait_until(lambda: other_q in past_answers(bot), "the accepted pair")
    assert past_answers(bot)[other_q][2] == "accepted-reaction"

    # The maintainer edits the answer: the pair follows.
    synapse.send_event(
        maint,
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* Upgrade to Keras 3, then use keras.optimizers.AdamW(learning_rate=1e-3).",
            "m.new_content": {
                "msgtype": "m.text",
                "body": "Upgrade to Keras 3, then use keras.optimizers.AdamW(learning_rate=1e-3).",
            },
            "m.relates_to": {"rel_type": "m.replace", "event_id": answer},
        },
    )
    wait_until(
        lambda: "learning_rate=1e-3" in past_answers(bot).get(question, ("",))[0],
        "the edited answer",
    )

    # ... and redacts it: the pair is gone.
    synapse.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/redact/{quote(answer)}/redact-{n}",
        user=maint,
        body={"reason": "outdated"},
    )
    wait_until(lambda: question not in past_answers(bot), "the redaction")
    assert bot.stop() == 0


def _thread_reply(synapse: SynapseServer, reader: MatrixUser, room_id: str, root: str) -> str:
    for event in reversed(synapse.messages(reader, room_id, limit=200)):
        relates = event.get("content", {}).get("m.relates_to", {})
        if event.get("type") == "m.room.message" and relates.get("event_id") == root:
            return str(event["event_id"])
    raise AssertionError("no thread reply found")


def test_an_index_published_outside_is_picked_up_while_serving(
    synapse: SynapseServer,
    make_bot: Callable[..., tuple[Bot, MatrixUser]],
    tmp_path: Path,
    encoder: object,
) -> None:
    from bot.settings import load_settings
    from index_builder.build import build_index

    room_id, bot_user, alice, _bob = new_room(synapse)
    bot, _ = make_bot(room_id, bot_user, SUPPORTBOT_INDEX_WATCH_SECONDS="0.5")
    bot.start()
    docs = tmp_path / "docs"
    shutil.copytree(MINI_DOCS, docs)
    (docs / "guides" / "md" / "mixed_precision.md").write_text(
        "# Mixed precision\n\nCall keras.mixed_precision.set_global_policy('mixed_float16') "
        "to train with float16 compute and float32 variables.\n",
        encoding="utf-8",
    )
    # What `supportbot index build` run by cron would do, into the bot's data dir.
    settings = load_settings(data_dir=bot.data_dir, docs_dir=docs, include_keras_api=False)
    report = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    bot.wait_for_log(f"picked up index {report.version}")
    ask(synapse, alice, room_id, bot_user, "how do I train with float16 mixed precision?")
    [reply] = wait_replies(synapse, alice, room_id, bot_user, 1)
    assert "https://keras.io/guides/mixed_precision/" in reply["content"]["body"]
    assert bot.stop() == 0


def test_metrics_and_readiness_move_when_questions_arrive(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    import re
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    room_id, bot_user, alice, _bob = new_room(synapse)
    bot, _ = make_bot(room_id, bot_user)
    bot.start()
    port = re.search(r"/metrics on 127\.0\.0\.1:(\d+)", bot.log())
    assert port, bot.log()[-2000:]
    base = f"http://127.0.0.1:{port.group(1)}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    def metric(name: str) -> float:
        _status, text = get("/metrics")
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )

    assert get("/healthz")[0] == 200
    assert get("/readyz")[0] == 200
    assert metric("supportbot_index_documents") == 6
    replies_before = metric("supportbot_replies_total")
    events_before = metric("supportbot_events_total")
    ask(synapse, alice, room_id, bot_user, QUESTIONS[0])
    wait_replies(synapse, alice, room_id, bot_user, 1)
    deadline = time.monotonic() + 30
    while metric("supportbot_replies_total") == replies_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric("supportbot_replies_total") == replies_before + 1
    assert metric("supportbot_events_total") > events_before
    assert metric("supportbot_answer_seconds_count") >= 1
    assert bot.stop() == 0


def http_get(base: str, path: str) -> tuple[int, str]:
    """GET on the bot's web port: (status, body), error statuses included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_hung_homeserver_trips_the_watchdog_and_readiness(
    own_synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    """A homeserver that accepts connections and never answers (SIGSTOPped): the watchdog
    drops the silent /sync, /readyz turns 503 with the reason while /healthz stays 200, and
    once the server wakes the bot syncs, is ready and answers again."""
    import json
    import re

    server = own_synapse  # paused below: the module's server stays up for the other tests
    room_id, bot_user, alice, _bob = new_room(server)
    bot, _ = make_bot(
        room_id,
        bot_user,
        homeserver=server,
        SUPPORTBOT_SYNC_TIMEOUT_MS="1000",
        SUPPORTBOT_SYNC_WATCHDOG_SECONDS="2",
    )
    bot.start()
    port = re.search(r"/metrics on 127\.0\.0\.1:(\d+)", bot.log())
    assert port, bot.log()[-2000:]
    base = f"http://127.0.0.1:{port.group(1)}"

    def ready() -> tuple[int, dict[str, Any]]:
        status, body = http_get(base, "/readyz")
        return status, json.loads(body)

    wait_until(lambda: ready()[0] == 200, "/readyz to be 200")
    assert ready() == (200, {"status": "ready", "detail": "syncing"})
    trips = bot.log().count("(watchdog)")  # a loaded machine may have tripped it already
    server.pause()
    try:
        bot.wait_for_log("(watchdog)", trips + 1)  # the silent long-poll was dropped
        wait_until(lambda: ready()[0] == 503, "/readyz to turn 503")
        status, body = ready()
        assert status == 503 and body["status"] == "not ready"
        assert body["detail"].startswith("last successful /sync")
        assert http_get(base, "/healthz")[0] == 200  # the process itself is fine
        assert bot.proc is not None and bot.proc.poll() is None
    finally:
        server.resume()
    wait_until(lambda: ready()[0] == 200, "/readyz to be 200 again")
    question = ask(server, alice, room_id, bot_user, QUESTIONS[0])
    [reply] = wait_replies(server, alice, room_id, bot_user, 1)
    assert replied_to(reply) == question
    assert "sync-watchdog" in http_get(base, "/metrics")[1]
    assert bot.stop() == 0


def test_dashboard_post_reaches_the_matrix_thread_as_the_bot(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    """A maintainer signs in to the running bot's dashboard and posts an answer: it goes to the
    question's Matrix thread as the bot, mentioning the asker, and is credited to them."""
    import re
    import urllib.request
    from http.cookiejar import CookieJar
    from urllib.parse import urlencode

    room_id, bot_user, alice, _bob = new_room(synapse)
    # Never confident on this tiny index: the question waits for a maintainer.
    bot, _ = make_bot(room_id, bot_user, SUPPORTBOT_REPLY_THRESHOLD="0.99")
    password = "correct horse battery"
    added = subprocess.run(
        [sys.executable, "-m", "bot", "users", "add", "maria"],
        input=password + "\n",
        env=bot.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    bot.start()
    port = re.search(r"/metrics on 127\.0\.0\.1:(\d+)", bot.log())
    assert port, bot.log()[-2000:]
    base = f"http://127.0.0.1:{port.group(1)}"

    question = ask(synapse, alice, room_id, bot_user, QUESTIONS[1])
    [note] = wait_replies(synapse, alice, room_id, bot_user, 1)
    assert "maintainers" in note["content"]["body"]

    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def form_token(html: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found, html[:2000]
        return found.group(1)

    def post(path: str, fields: dict[str, str]) -> str:
        with browser.open(base + path, data=urlencode(fields).encode(), timeout=30) as resp:
            return str(resp.read().decode())

    with browser.open(base + "/login", timeout=30) as resp:
        login = resp.read().decode()
    post(
        "/login",
        {"csrf_token": form_token(login), "name": "maria", "password": password, "next": "/"},
    )
    page_path = "/questions/" + quote(question, safe="")
    with browser.open(base + page_path, timeout=30) as resp:
        page = resp.read().decode()
    answer = "Use `model.save('model.keras')` and `keras.saving.load_model('model.keras')`."
    done = post(page_path + "/post", {"csrf_token": form_token(page), "body": answer})
    assert "Posted" in done or "posted" in done

    replies = wait_replies(synapse, alice, room_id, bot_user, 2)
    [posted] = [r for r in replies if r["content"]["body"] == answer]
    content = posted["content"]
    assert content["m.relates_to"]["rel_type"] == "m.thread"
    assert content["m.relates_to"]["event_id"] == question
    assert content["m.mentions"] == {"user_ids": [alice.user_id]}
    assert "<code>model.save('model.keras')</code>" in content["formatted_body"]
    bot.wait_for_log(posted["event_id"])  # its own post came back through /sync, ignored
    assert bot.stop() == 0
    with bot.db() as db:
        [(state, posted_by)] = db.execute("SELECT state, posted_by FROM dashboard_posts")
        status, answered_by = db.execute(
            "SELECT status, answered_by FROM questions WHERE event_id = ?", (question,)
        ).fetchone()
        [established] = db.execute("SELECT established_by FROM past_answers").fetchall()
    assert (state, posted_by) == ("sent", "maria")
    assert (status, answered_by) == ("answered_person", "maria")
    assert established == ("dashboard-post",)
    assert len(bot_replies(synapse, alice, room_id, bot_user)) == 2  # the note and the post


def test_a_mention_is_a_request_closest_pages_and_deferred_across_a_restart(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    """Below the threshold a mention in a Matrix room gets the closest pages, marked unsure; a
    second mention inside the asker's cooldown waits in the database, survives a SIGKILL and
    is answered once when the cooldown is over."""
    room_id, bot_user, alice, _bob = new_room(synapse)
    bot, _ = make_bot(
        room_id,
        bot_user,
        SUPPORTBOT_REPLY_THRESHOLD="1.0",  # never confident: every reply is the unsure one
        SUPPORTBOT_USER_COOLDOWN_SECONDS="4",
        SUPPORTBOT_CLAIM_LEASE_SECONDS="4",  # the sweep that finds it due runs every second
    )
    bot.start()
    first = ask(synapse, alice, room_id, bot_user, QUESTIONS[0])
    [unsure] = wait_replies(synapse, alice, room_id, bot_user, 1)
    content = unsure["content"]
    assert replied_to(unsure) == first
    assert content["body"].startswith("I'm not sure the docs answer this")
    assert "https://keras.io/guides/training_loops/" in content["body"]
    assert '<a href="https://keras.io/guides/training_loops/">' in content["formatted_body"]
    assert content["body"].endswith("I've also put your question in the maintainers' queue.")

    second = ask(synapse, alice, room_id, bot_user, QUESTIONS[1])
    bot.wait_for_log(f"mention {second} from {alice.user_id} waits for the rate limits")
    bot.kill()
    bot.start()
    replies = wait_replies(synapse, alice, room_id, bot_user, 2)
    assert [replied_to(r) for r in replies] == [first, second]
    assert "https://keras.io/" in replies[1]["content"]["body"]
    bot.wait_for_log(replies[1]["event_id"])  # its reply came back through /sync
    assert bot.stop() == 0
    with bot.db() as db:
        outcomes = dict(db.execute("SELECT event_id, outcome FROM room_events"))
        created = dict(db.execute("SELECT question_event_id, created_at FROM replies"))
    assert outcomes[first] == outcomes[second] == "replied:unsure"
    # Claimed no earlier than the cooldown allowed (the 4 s after the first reply's claim).
    one, two = (datetime.fromisoformat(created[e]) for e in (first, second))
    assert two >= one + timedelta(seconds=4)
    assert len(bot_replies(synapse, alice, room_id, bot_user)) == 2


# --- newcomers: a first-time asker's flow from question to clarification to answer ------------
WELCOME = "Welcome to the Keras room! The docs are at https://keras.io/api/."
ASK = "To help, add"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 9, in <module>\n'
    "    model.fit(x, y, epochs=3)\n"
    '  File "/usr/lib/python3.11/site-packages/keras/src/trainers/trainer.py", line 120, in fit\n'
    "ValueError: Invalid dtype: object"
)


def thread_of_reply(reply: dict[str, Any]) -> str:
    relates = reply["content"]["m.relates_to"]
    assert relates["rel_type"] == "m.thread"
    return str(relates["event_id"])


def test_a_first_time_askers_flow_from_question_to_clarification_to_answer(
    synapse: SynapseServer, make_bot: Callable[..., tuple[Bot, MatrixUser]]
) -> None:
    """A newcomer's question lacking what decides it gets the welcome and the ask; their reply
    in the thread with a traceback gets one more answer on the fuller text, and nothing after.
    A second newcomer supplies it by editing the question instead: one more answer too."""
    from bot.store.database import Database
    from bot.store.newcomers import first_questions

    room_id, bot_user, alice, bob = new_room(synapse)
    carol = synapse.register(f"carol-{next(_users)}")
    synapse.join(carol, room_id)
    bot, _ = make_bot(
        room_id,
        bot_user,
        SUPPORTBOT_WELCOME_NEWCOMERS="true",
        SUPPORTBOT_WELCOME_LINE=WELCOME,
        SUPPORTBOT_REPLY_THRESHOLD="1.0",  # never confident: every answer is the unsure one
    )
    bot.start()
    settled = (room_messages(synapse, alice, room_id), handled_in(bot))

    # Bob's first message: a question without the traceback or the version.
    question = ask(
        synapse, bob, room_id, bot_user, "my model.fit raises an error, how do I fix it?"
    )
    [first] = wait_replies(synapse, alice, room_id, bot_user, 1)
    body = first["content"]["body"]
    assert (thread_of_reply(first), replied_to(first)) == (question, question)
    assert body.startswith(f"{WELCOME}\n\n") and body.count(WELCOME) == 1
    assert f"{ASK}: your Keras version and backend" in body and "the full traceback" in body

    # He adds the traceback in the thread: answered again, once, on question + traceback
    # (whose keras frames name the version too), so nothing is asked for any more.
    follow_up = in_thread(synapse, bob, room_id, question, f"here it is:\n```\n{TRACEBACK}\n```")
    again = wait_replies(synapse, alice, room_id, bot_user, 2)[1]
    assert (thread_of_reply(again), replied_to(again)) == (question, follow_up)
    assert again["content"]["m.mentions"] == {"user_ids": [bob.user_id]}
    assert ASK not in again["content"]["body"] and WELCOME not in again["content"]["body"]
    more = in_thread(synapse, bob, room_id, question, f"still failing:\n```\n{TRACEBACK}\n```")
    wait_settled(*settled)
    assert len(bot_replies(synapse, alice, room_id, bot_user)) == 2

    # Carol, new too, edits her question to add the traceback: one answer, to the question.
    asked = f"{bot_user.localpart}: training stops with an error on the first epoch, any idea why?"
    second = synapse.send_text(carol, room_id, asked, mentions=[bot_user.user_id])
    welcomed = wait_replies(synapse, alice, room_id, bot_user, 3)[2]
    assert replied_to(welcomed) == second and welcomed["content"]["body"].startswith(WELCOME)
    assert ASK in welcomed["content"]["body"]
    edit = synapse.edit_text(carol, room_id, second, f"{asked}\n```\n{TRACEBACK}\n```")
    answered = wait_replies(synapse, alice, room_id, bot_user, 4)[3]
    assert (thread_of_reply(answered), replied_to(answered)) == (second, second)
    assert answered["content"]["m.mentions"] == {"user_ids": [carol.user_id]}
    assert ASK not in answered["content"]["body"] and WELCOME not in answered["content"]["body"]
    again_edit = synapse.edit_text(carol, room_id, second, f"{asked}\n```\n{TRACEBACK}\n```\n?")
    wait_settled(*settled)
    assert len(bot_replies(synapse, alice, room_id, bot_user)) == 4

    assert bot.stop() == 0
    with contextlib.closing(bot.db()) as db:
        outcomes = dict(db.execute("SELECT event_id, outcome FROM room_events"))
    assert [outcomes[e] for e in (question, follow_up, more)] == [
        "replied:unsure",
        "replied:unsure",
        "not-a-question",
    ]
    assert [outcomes[e] for e in (second, edit, again_edit)] == [
        "replied:unsure",
        "replied:unsure:edit",
        "ignored:edit",
    ]
    store = Database(f"sqlite:///{bot.data_dir / 'supportbot.db'}")
    try:
        assert first_questions(store, [question, second]) == {question, second}
    finally:
        store.close()

"""bot.answering.policy: mentions, ignore rules, question heuristics, reply rate limits."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.answering.policy import (
    MAX_DEFER_ROUNDS,
    BotIdentity,
    Limit,
    ReplyLimiter,
    defer_rounds,
    ignore_reason,
    looks_like_question,
    mention_action,
    question_text,
    strip_reply_fallback,
)
from bot.chat.events import RoomEvent
from bot.store.database import Database
from bot.store.models import ReplyRow
from bot.store.room_store import RoomStore

BOT = "@keras-bot:gitter.im"
ME = BotIdentity(BOT)
ME_NAMED = BotIdentity(BOT, "Keras Helper")


def event(
    body: str,
    *,
    formatted: str | None = None,
    mentions: tuple[str, ...] = (),
    sender: str = "@alice:gitter.im",
    msgtype: str | None = "m.text",
    rel_type: str | None = None,
    relates_to: str | None = None,
    in_reply_to: str | None = None,
) -> RoomEvent:
    return RoomEvent(
        room_id="!room:gitter.im",
        event_id="$e1",
        sender=sender,
        origin_ts=1,
        event_type="m.room.message",
        msgtype=msgtype,
        body=body,
        formatted_body=formatted,
        rel_type=rel_type,
        relates_to=relates_to,
        in_reply_to=in_reply_to,
        mentions=mentions,
    )


# --- identity ------------------------------------------------------------------------------------
def test_localpart() -> None:
    assert ME.localpart == "keras-bot"
    assert BotIdentity("@x:server.org:8448").localpart == "x"


# --- mentions ------------------------------------------------------------------------------------
def test_m_mentions_user_ids() -> None:
    assert ME.mentioned_in(event("no name in here", mentions=(BOT,)))
    assert ME.mentioned_in(event("no name", mentions=("@bob:gitter.im", BOT)))
    assert not ME.mentioned_in(event("no name", mentions=("@bob:gitter.im",)))
    # Another user with the same localpart on another server is not us.
    assert not ME.mentioned_in(event("no name", mentions=("@keras-bot:matrix.org",)))


@pytest.mark.parametrize(
    "href",
    [
        f"https://matrix.to/#/{BOT}",
        "https://matrix.to/#/%40keras-bot:gitter.im",
    ],
)
def test_matrix_to_pill(href: str) -> None:
    formatted = f'<a href="{href}">Helper</a> how do I save?'
    assert ME.mentioned_in(event("Helper how do I save?", formatted=formatted))


def test_pill_for_someone_else_is_not_a_mention() -> None:
    formatted = '<a href="https://matrix.to/#/@bob:gitter.im">bob</a>: thanks'
    assert not ME.mentioned_in(event("bob: thanks", formatted=formatted))


@pytest.mark.parametrize(
    "body",
    [
        "keras-bot: how do I save a model?",
        "@keras-bot how do I save a model?",
        "KERAS-BOT, how do I save a model?",
        "hey keras-bot how do I save a model?",
        "thanks keras-bot.",
        "what do you think, keras-bot?",
        "(keras-bot) any idea?",
        f"{BOT} how do I save a model?",
        f"ping {BOT}: help",
    ],
)
def test_localpart_as_a_word(body: str) -> None:
    assert ME.mentioned_in(event(body))


@pytest.mark.parametrize(
    "body",
    [
        "Keras Helper: how do I save a model?",
        "keras helper how do I save a model?",
        "thanks @Keras Helper!",
    ],
)
def test_display_name_as_a_word(body: str) -> None:
    assert ME_NAMED.mentioned_in(event(body))
    assert not ME.mentioned_in(event(body))  # no display name known: only the localpart


@pytest.mark.parametrize(
    "body",
    [
        "keras-botany is a great hobby",
        "the keras-bots are coming",
        "mykeras-bot is different",
        "ask super-keras-bot instead",
        "write to x@keras-bot.com",
        "keras_bot is not me",
        "how do I use keras?",
        "",
    ],
)
def test_not_a_mention_inside_other_words(body: str) -> None:
    assert not ME.mentioned_in(event(body))


@pytest.mark.parametrize(
    "body",
    ["see https://keras-bot.example.com/docs", "https://github.com/keras-bot/issues is open"],
)
def test_not_a_mention_inside_a_url(body: str) -> None:
    assert not ME.mentioned_in(event(body))


def test_not_a_mention_as_the_local_part_of_an_email() -> None:
    assert not ME.mentioned_in(event("mail keras-bot@gmail.com for access"))


def test_display_name_inside_a_word_is_not_a_mention() -> None:
    assert not ME_NAMED.mentioned_in(event("the Keras Helpers team"))


def test_reply_fallback_quote_is_not_a_mention() -> None:
    body = f"> <{BOT}> I couldn't find an answer\n> second quoted line\n\nthanks anyway"
    assert not ME.mentioned_in(event(body, in_reply_to="$bot-reply"))
    # The same text outside the fallback block is a mention.
    assert ME.mentioned_in(event(f"thanks anyway {BOT}"))
    # And a mention after the fallback still counts.
    assert ME.mentioned_in(event("> <@bob:gitter.im> hi\n\nkeras-bot: how?"))


def test_pill_in_quoted_html_reply_fallback_is_not_a_mention() -> None:
    # Bob replies to Alice's question that had pinged the bot: Bob did not address the bot.
    formatted = (
        "<mx-reply><blockquote>"
        '<a href="https://matrix.to/#/!room:gitter.im/$q">In reply to</a> '
        '<a href="https://matrix.to/#/@alice:gitter.im">@alice:gitter.im</a><br>'
        f'<a href="https://matrix.to/#/{BOT}">keras-bot</a> how do I save a model?'
        "</blockquote></mx-reply>"
        "use model.save"
    )
    body = "> <@alice:gitter.im> keras-bot how do I save a model?\n\nuse model.save"
    reply = event(body, formatted=formatted, sender="@bob:gitter.im", in_reply_to="$q")
    assert not ME.mentioned_in(reply)


# --- strip_mention / question_text --------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keras-bot: how do I save a model?", "how do I save a model?"),
        ("keras-bot, how do I save a model?", "how do I save a model?"),
        ("@keras-bot how do I save a model?", "how do I save a model?"),
        ("Keras-Bot:   how?", "how?"),
        ("no mention here", "no mention here"),
        ("keras-botany: how?", "keras-botany: how?"),
        ("", ""),
    ],
)
def test_strip_mention(text: str, expected: str) -> None:
    assert ME.strip_mention(text) == expected


def test_strip_mention_anywhere_in_the_text() -> None:
    stripped = ME.strip_mention("how do I save a model, keras-bot?")
    assert "keras-bot" not in stripped
    assert stripped.startswith("how do I save a model")


def test_strip_display_name() -> None:
    assert ME_NAMED.strip_mention("Keras Helper: how do I save?") == "how do I save?"


def test_strip_full_user_id() -> None:
    assert ME.strip_mention(f"{BOT}: how do I save a model?") == "how do I save a model?"


def test_question_text_drops_fallback_and_mention() -> None:
    body = "> <@bob:gitter.im> old message\n\nkeras-bot: how do I freeze layers?"
    assert question_text(event(body), ME) == "how do I freeze layers?"


def test_strip_reply_fallback() -> None:
    assert strip_reply_fallback("> <@a:b> quoted\n\nanswer") == "answer"
    assert strip_reply_fallback("> <@a:b> l1\n> l2\nanswer") == "answer"
    assert strip_reply_fallback("no quote\n> later quote\n") == "no quote\n> later quote\n"
    assert strip_reply_fallback("> <@a:b> only the quote\n") == ""
    assert strip_reply_fallback("") == ""


# --- ignore rules --------------------------------------------------------------------------------
def test_ignore_reasons() -> None:
    ignore = frozenset({"@otherbot:gitter.im"})
    assert ignore_reason(event("how?", sender=BOT), ME, ignore) == "own-message"
    assert ignore_reason(event("how?", sender="@otherbot:gitter.im"), ME, ignore) == "ignored-user"
    edit = event(" * how?", rel_type="m.replace", relates_to="$orig")
    assert ignore_reason(edit, ME, ignore) == "edit"
    assert ignore_reason(event("how?", msgtype="m.notice"), ME, ignore) == "notice"
    for msgtype in ("m.image", "m.file", "m.video", "m.audio", "m.location", "x.custom"):
        assert ignore_reason(event("pic.png", msgtype=msgtype), ME, ignore) == "not-text"
    for body in ("", "   ", "\n\t \n", "> <@a:b> only quoted\n\n", "> <@a:b> q\n\n   \n"):
        assert ignore_reason(event(body), ME, ignore) == "empty"


def test_ignore_reason_precedence() -> None:
    # Own messages win over everything (the bot speaks in notices, possibly empty).
    own = event("", sender=BOT, msgtype="m.notice", rel_type="m.replace")
    assert ignore_reason(own, ME, frozenset({BOT})) == "own-message"
    # An edit of a notice is an edit first.
    assert ignore_reason(event("x", msgtype="m.notice", rel_type="m.replace"), ME, frozenset()) == (
        "edit"
    )


def test_answerable_messages_are_not_ignored() -> None:
    nothing: frozenset[str] = frozenset()
    assert ignore_reason(event("how do I save?"), ME, nothing) is None
    assert ignore_reason(event("wonders how to save", msgtype="m.emote"), ME, nothing) is None
    assert ignore_reason(event("how?", msgtype=None), ME, nothing) is None
    in_thread = event("how?", rel_type="m.thread", relates_to="$root")
    assert ignore_reason(in_thread, ME, nothing) is None
    assert ignore_reason(event("> <@a:b> quoted\n\nmy question"), ME, nothing) is None


# --- question heuristics -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "How do I save a model?",
        "how do I save a model",
        "Why does fit() run out of memory",
        "Can someone explain callbacks",
        "Does keras support TPUs",
        "anyone used mixed precision with keras 3",
        "Help with custom layers please",
        "I can't load my saved model",
        "i keep getting nan loss",
        "model.fit fails?",
        "   is there a way to freeze layers",
    ],
)
def test_english_questions(text: str) -> None:
    assert looks_like_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "ValueError: Input 0 of layer dense is incompatible with the layer",
        "Traceback (most recent call last):\n  File 'x.py', line 1",
        "tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM",
        "getting a RuntimeException from the JNI bridge",
    ],
)
def test_error_messages(text: str) -> None:
    assert looks_like_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "thanks, that worked",
        "Good morning everyone",
        "Keras 3 was released today.",
        "This is a statement about errors in general",  # lower-case 'errors' is not an Error
        "Issue fixed after the upgrade",  # 'Is' only as a whole word
        "Helpful answer, thank you",
        "",
        "   \n\t",
    ],
)
def test_statements(text: str) -> None:
    assert not looks_like_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "model.fit(x_train, y_train, epochs=10, batch_size=32)",
        "import keras\nfrom keras import layers\nmodel = keras.Sequential([layers.Dense(10)])",
        "```python\nx = np.zeros((3, 3))\n```",
    ],
)
def test_code_only(text: str) -> None:
    assert not looks_like_question(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("¿Cómo guardo el modelo?", True),
        ("Comment sauvegarder mon modèle ?", True),
        ("Wie speichere ich mein Modell", False),
        ("Спасибо, всё работает", False),
        ("谢谢，问题解决了", False),
    ],
)
def test_non_english(text: str, expected: bool) -> None:
    assert looks_like_question(text) is expected


@pytest.mark.parametrize("text", ["如何保存模型？", "モデルを保存するには？", "كيف أحفظ النموذج؟"])
def test_non_latin_question_marks(text: str) -> None:
    assert looks_like_question(text)


@pytest.mark.timeout(60)  # a hang guard for catastrophic backtracking, not a speed bar
def test_100kb_text() -> None:
    words = ("lorem ipsum dolor sit amet consectetur " * 3000)[:100_000]
    one_word = "a" * 100_000
    no_spaces = "x." * 50_000
    assert not looks_like_question(words)
    assert not looks_like_question(one_word)
    assert not looks_like_question(no_spaces)
    assert looks_like_question(words + "?")
    assert looks_like_question(one_word + "Error")
    assert looks_like_question(no_spaces + " ValueError: bad shape")
    assert looks_like_question("How " + words)


@pytest.mark.timeout(60)  # a hang guard, not a speed bar
def test_binary_looking_text() -> None:
    rng = random.Random(1234)
    # Bytes that never decode to '?' or to ASCII letters: mostly U+FFFD and control characters.
    alphabet = [b for b in range(256) if b >= 0x80 or b < 0x20]
    blob = bytes(rng.choice(alphabet) for _ in range(50_000)).decode("utf-8", errors="replace")
    assert looks_like_question(blob) is False
    # Judged as noise from its start: what follows never makes it a question.
    assert looks_like_question(blob + " How do I fit? ValueError") is False
    # Arbitrary bytes: never raises, always a bool.
    for _ in range(20):
        raw = bytes(rng.randrange(256) for _ in range(2_000)).decode("utf-8", errors="replace")
        assert isinstance(looks_like_question(raw), bool)


# --- rate limits ---------------------------------------------------------------------------------
# The limiter reads the replies every worker claimed from the database (SQLite and PostgreSQL).
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_replies = itertools.count()


@pytest.fixture
def room_store(database_url: str) -> Iterator[RoomStore]:
    db = Database(database_url)
    db.create_schema()
    yield RoomStore(db)
    db.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(store: RoomStore, room_id: str, user: str, seconds: float) -> None:
    """A reply to ``user``'s question in ``room_id``, claimed at T0 + ``seconds``."""
    qid = f"$q{next(_replies)}"
    question = RoomEvent(room_id, qid, user, 0, "m.room.message", "m.text", "how?")
    store.persist_batch([question], None)
    store.claim_reply(
        question_event_id=qid,
        room_id=room_id,
        txn_id=f"txn-{qid}",
        body="b",
        formatted_body="<p>b</p>",
        thread_root=qid,
    )
    with store.db.session() as s:
        s.execute(
            update(ReplyRow).where(ReplyRow.question_event_id == qid).values(created_at=at(seconds))
        )


def test_user_cooldown(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=30.0, room_per_minute=100, history=room_store)
    assert limiter.check("!a", "@u", now=at(0)) is None
    record(room_store, "!a", "@u", 0)
    assert limiter.check("!a", "@u", now=at(0)) == "user-cooldown"
    assert limiter.check("!a", "@u", now=at(29.9)) == "user-cooldown"
    assert limiter.check("!a", "@u", now=at(30)) is None
    # Other users are not affected.
    assert limiter.check("!a", "@v", now=at(0)) is None
    # The cooldown is per user, in every room.
    assert limiter.check("!b", "@u", now=at(10)) == "user-cooldown"


def test_zero_cooldown(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=0.0, room_per_minute=100, history=room_store)
    record(room_store, "!a", "@u", 5)
    assert limiter.check("!a", "@u", now=at(5)) is None


def test_room_window_of_60_seconds(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=0.0, room_per_minute=3, history=room_store)
    for i, t in enumerate((0.0, 10.0, 20.0)):
        assert limiter.check("!a", f"@u{i}", now=at(t)) is None
        record(room_store, "!a", f"@u{i}", t)
    assert limiter.check("!a", "@new", now=at(30)) == "room-rate-limit"
    assert limiter.check("!a", "@new", now=at(59.9)) == "room-rate-limit"
    assert limiter.check("!a", "@new", now=at(60)) is None  # the first reply left the window
    record(room_store, "!a", "@new", 60)
    assert limiter.check("!a", "@other", now=at(65)) == "room-rate-limit"
    assert limiter.check("!a", "@other", now=at(70)) is None
    # Another room has its own window.
    assert limiter.check("!b", "@other", now=at(30)) is None


def test_rooms_are_independent(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=0.0, room_per_minute=1, history=room_store)
    record(room_store, "!a", "@u", 0)
    assert limiter.check("!a", "@v", now=at(1)) == "room-rate-limit"
    assert limiter.check("!b", "@v", now=at(1)) is None
    record(room_store, "!b", "@v", 1)
    assert limiter.check("!b", "@w", now=at(2)) == "room-rate-limit"
    assert limiter.check("!c", "@w", now=at(2)) is None


def test_check_does_not_record(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=30.0, room_per_minute=1, history=room_store)
    for _ in range(5):
        assert limiter.check("!a", "@u", now=at(0)) is None


def test_limits_are_shared_by_workers(database_url: str) -> None:
    # Two workers, each with its own connection to the database: what one replied counts
    # against the other's limits.
    first, second = Database(database_url), Database(database_url)
    first.create_schema()
    try:
        one = ReplyLimiter(user_cooldown=30.0, room_per_minute=2, history=RoomStore(first))
        two = ReplyLimiter(user_cooldown=30.0, room_per_minute=2, history=RoomStore(second))
        record(RoomStore(first), "!a", "@u", 0)
        assert two.check("!a", "@u", now=at(1)) == "user-cooldown"
        record(RoomStore(second), "!a", "@v", 1)
        assert one.check("!a", "@w", now=at(2)) == "room-rate-limit"
        assert one.check("!a", "@w", now=at(60.5)) is None
    finally:
        first.close()
        second.close()


def test_rejected_replies_do_not_count(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=30.0, room_per_minute=1, history=room_store)
    record(room_store, "!a", "@u", 0)
    [row] = room_store.pending_replies()
    room_store.mark_reply_rejected(row.question_event_id)  # never appeared in the room
    assert limiter.check("!a", "@u", now=at(1)) is None


def test_default_clock_is_the_wall_clock(room_store: RoomStore) -> None:
    # Claimed replies carry a wall-clock time (they are compared across processes and hosts).
    limiter = ReplyLimiter(user_cooldown=3600.0, room_per_minute=10, history=room_store)
    record(room_store, "!a", "@u", 0)
    with room_store.db.session() as s:
        s.execute(update(ReplyRow).values(created_at=datetime.now(UTC)))
    assert limiter.check("!a", "@u") == "user-cooldown"
    assert limiter.check("!a", "@u", now=datetime.now(UTC) + timedelta(seconds=3601)) is None


# --- when a held-back reply may go, and what a mention gets meanwhile ---------------------------
def test_limit_says_when_it_passes(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=30.0, room_per_minute=2, history=room_store)
    assert limiter.limit("!a", "@u", now=at(0)) is None
    record(room_store, "!a", "@u", 0)
    assert limiter.limit("!a", "@u", now=at(10)) == Limit("user-cooldown", at(30))
    record(room_store, "!a", "@v", 20)
    # Both limits: the first reason, and the later of the two times (the room frees at 60).
    assert limiter.limit("!a", "@u", now=at(25)) == Limit("user-cooldown", at(60))
    assert limiter.limit("!a", "@w", now=at(25)) == Limit("room-rate-limit", at(60))
    record(room_store, "!a", "@w", 30)
    # Three in the window, two allowed: the second-oldest must leave too.
    assert limiter.limit("!a", "@x", now=at(35)) == Limit("room-rate-limit", at(80))
    assert limiter.limit("!a", "@x", now=at(80)) is None


def test_notice_limit_one_per_user_and_a_rooms_worth(room_store: RoomStore) -> None:
    limiter = ReplyLimiter(user_cooldown=10.0, room_per_minute=2, history=room_store)
    assert limiter.notice_limit("!a", "@u") is None
    for n, user in enumerate(("@u", "@v")):
        qid = f"$notice{n}"
        room_store.persist_batch(
            [RoomEvent("!a", qid, user, 0, "m.room.message", "m.text", "?")], None
        )
        room_store.mark_handled(qid, "notice:too-many-waiting")
    # Told within the last minute (the cooldown is shorter, the minute counts).
    assert limiter.notice_limit("!a", "@u") == "told-already"
    assert limiter.notice_limit("!a", "@w") == "room-notice-limit"
    assert limiter.notice_limit("!b", "@w") is None
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert limiter.notice_limit("!a", "@u", now=later) is None


@pytest.mark.parametrize(
    ("rounds", "for_user", "in_room", "action"),
    [
        (0, 0, 0, "defer"),
        (0, 2, 5, "defer"),
        (0, 3, 0, "too-many-waiting"),  # this asker has enough waiting
        (0, 0, 6, "room-busy"),  # a minute's worth of replies waits in the room
        (0, 3, 6, "too-many-waiting"),
        (1, 3, 6, "defer"),  # already waiting: keeps its place
        (MAX_DEFER_ROUNDS - 1, 0, 0, "defer"),
        (MAX_DEFER_ROUNDS, 0, 0, "waited-too-long"),
    ],
)
def test_mention_action(rounds: int, for_user: int, in_room: int, action: str) -> None:
    got = mention_action(
        rounds=rounds,
        waiting_for_user=for_user,
        waiting_in_room=in_room,
        max_per_user=3,
        max_per_room=6,
    )
    assert got == action


def test_no_deferral_at_all_when_the_operator_allows_none() -> None:
    kwargs = {"waiting_for_user": 0, "waiting_in_room": 0, "max_per_room": 6}
    assert mention_action(rounds=0, max_per_user=0, **kwargs) == "too-many-waiting"


@pytest.mark.parametrize(
    ("held", "rounds"),
    [
        (None, 0),
        ("notice:room-busy", 0),
        ("deferred:user-cooldown:1", 1),
        ("deferred:room-rate-limit:7", 7),
        ("deferred:odd", 1),
    ],
)
def test_defer_rounds(held: str | None, rounds: int) -> None:
    assert defer_rounds(held) == rounds

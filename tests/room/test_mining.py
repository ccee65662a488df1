"""The pure decisions of `bot.room.learning.learn` on handmade events."""

from __future__ import annotations

from collections.abc import Sequence

from bot.chat.events import RoomEvent
from bot.corpus.pair_changes import Change, Remove, StoredPair, UpdateText, Upsert, thread_key
from bot.room.learning import learn

BOT, ALICE, BOB, MAINT, MOD = "@bot:x", "@alice:x", "@bob:x", "@maint:x", "@mod:x"


def msg(eid: str, sender: str, body: str, **kw: object) -> RoomEvent:
    return RoomEvent("!r", eid, sender, 0, "m.room.message", "m.text", body, **kw)  # type: ignore[arg-type]  # kw: optional fields


def run(
    event: RoomEvent,
    events: list[RoomEvent],
    pairs: Sequence[StoredPair] = (),
    replied: bool = False,
) -> list[Change]:
    by_id = {e.event_id: e for e in events}
    return learn(
        event,
        lookup=by_id.get,
        pair_for_question=lambda q: next((p for p in pairs if p.question_event_id == q), None),
        pairs_touching=lambda e: [
            p for p in pairs if e in (p.question_event_id, p.answer_event_id)
        ],
        is_trusted=lambda _room, user: user == MAINT,
        bot_user=BOT,
        bot_replied=lambda _q: replied,
        is_moderator=lambda _room, user: user == MOD,
    )


QUESTION = msg("$q", ALICE, "How do I freeze layers?")


def test_maintainer_thread_answer_makes_a_pair() -> None:
    answer = msg("$a", MAINT, "Set layer.trainable = False.", rel_type="m.thread", relates_to="$q")
    [change] = run(answer, [QUESTION, answer])
    assert isinstance(change, Upsert)
    assert change.pair.key == thread_key("$q") and change.pair.answered_by == MAINT
    assert change.pair.established_by == "maintainer-thread"
    assert change.pair.url == "https://matrix.to/#/!r/$q"
    reply = msg("$a2", MAINT, "> <@alice:x> How do I...\n\nSet trainable.", in_reply_to="$q")
    [change] = run(reply, [QUESTION, reply])
    assert isinstance(change, Upsert) and change.pair.answer == "Set trainable."
    assert change.pair.established_by == "maintainer-reply"
    [change] = run(answer, [QUESTION, answer], replied=True)
    assert isinstance(change, Upsert) and change.pair.established_by == "maintainer-correction"


def test_untrusted_own_bot_and_second_answers_are_not_used() -> None:
    untrusted = msg("$a", BOB, "try this", rel_type="m.thread", relates_to="$q")
    assert run(untrusted, [QUESTION, untrusted]) == []
    own = msg("$q2", MAINT, "my question?")
    self_answer = msg("$a", MAINT, "answer", rel_type="m.thread", relates_to="$q2")
    assert run(self_answer, [own, self_answer]) == []
    bot_answer = msg("$b", BOT, "docs", rel_type="m.thread", relates_to="$q")
    assert run(bot_answer, [QUESTION, bot_answer]) == []
    second = msg("$a3", MAINT, "another", rel_type="m.thread", relates_to="$q")
    existing = [StoredPair(thread_key("$q"), "maintainer-thread", "$q", "$a")]
    assert run(second, [QUESTION, second], existing) == []


def test_asker_reaction_accepts_any_answer_but_not_from_others() -> None:
    answer = msg("$a", BOB, "try this", rel_type="m.thread", relates_to="$q")

    def react(sender: str, key: str) -> RoomEvent:
        return RoomEvent(
            "!r",
            "$re",
            sender,
            0,
            "m.reaction",
            None,
            key,
            rel_type="m.annotation",
            relates_to="$a",
        )

    [change] = run(react(ALICE, "✅"), [QUESTION, answer])
    assert isinstance(change, Upsert) and change.pair.established_by == "accepted-reaction"
    assert run(react(BOB, "✅"), [QUESTION, answer]) == []  # not the asker
    assert run(react(ALICE, "🎉"), [QUESTION, answer]) == []  # not an accepting key


def test_edits_and_redactions_follow_the_pair() -> None:
    pairs = [StoredPair(thread_key("$q"), "maintainer-thread", "$q", "$a")]
    answer = msg("$a", MAINT, "old", rel_type="m.thread", relates_to="$q")
    edit = msg("$e", MAINT, "new text", rel_type="m.replace", relates_to="$a")
    assert run(edit, [QUESTION, answer], pairs) == [UpdateText("$a", "new text")]
    foreign_edit = msg("$e", BOB, "hijack", rel_type="m.replace", relates_to="$a")
    assert run(foreign_edit, [QUESTION, answer], pairs) == []
    redaction = RoomEvent("!r", "$d", MAINT, 0, "m.room.redaction", None, "", relates_to="$a")
    assert run(redaction, [QUESTION, answer], pairs) == [Remove("$a")]
    assert run(redaction, [QUESTION, answer], []) == []


def test_pairs_link_where_the_room_is_reached() -> None:
    """In the local room, a past answer links the bot's own room page, not matrix.to."""
    answer = msg("$a", MAINT, "Set layer.trainable = False.", rel_type="m.thread", relates_to="$q")
    [change] = learn(
        answer,
        lookup={e.event_id: e for e in (QUESTION, answer)}.get,
        pair_for_question=lambda _q: None,
        pairs_touching=lambda _e: [],
        is_trusted=lambda _room, user: user == MAINT,
        bot_user=BOT,
        bot_replied=lambda _q: False,
        permalink=lambda room, event: f"http://127.0.0.1:8080/room#{event}",
    )
    assert isinstance(change, Upsert)
    assert change.pair.url == "http://127.0.0.1:8080/room#$q"


# --- pairs made by the asker's reaction alone wait for a maintainer ----------------------------
SECOND = msg("$a", BOB, "paste this snippet", rel_type="m.thread", relates_to="$q")


def react(sender: str, key: str = "✅", target: str = "$a") -> RoomEvent:
    return RoomEvent(
        "!r", "$re", sender, 0, "m.reaction", None, key, rel_type="m.annotation", relates_to=target
    )


def test_an_askers_reaction_makes_a_pending_pair() -> None:
    [change] = run(react(ALICE), [QUESTION, SECOND])
    assert isinstance(change, Upsert) and change.review == "pending"
    # A maintainer's answer is trusted at once.
    answer = msg("$m", MAINT, "Set layer.trainable = False.", rel_type="m.thread", relates_to="$q")
    [change] = run(answer, [QUESTION, answer])
    assert isinstance(change, Upsert) and change.review == "approved"


def test_an_askers_reaction_never_replaces_a_maintainers_pair() -> None:
    maintainers = [StoredPair(thread_key("$q"), "maintainer-thread", "$q", "$m")]
    assert run(react(ALICE), [QUESTION, SECOND], maintainers) == []
    approved = [StoredPair(thread_key("$q"), "accepted-reaction", "$q", "$a0", "approved")]
    assert run(react(ALICE), [QUESTION, SECOND], approved) == []
    # A pair still waiting may be replaced: the asker changed their mind.
    waiting = [StoredPair(thread_key("$q"), "accepted-reaction", "$q", "$a0", "pending")]
    [change] = run(react(ALICE), [QUESTION, SECOND], waiting)
    assert isinstance(change, Upsert) and change.answer_event_id == "$a"
    assert change.review == "pending"
    # A rejected answer is not proposed again by the same reaction.
    rejected = [StoredPair(thread_key("$q"), "accepted-reaction", "$q", "$a", "rejected")]
    assert run(react(ALICE), [QUESTION, SECOND], rejected) == []


def test_a_maintainers_answer_replaces_a_pair_nobody_approved() -> None:
    answer = msg("$m", MAINT, "Set layer.trainable = False.", rel_type="m.thread", relates_to="$q")
    for review in ("pending", "rejected"):
        stored = [StoredPair(thread_key("$q"), "accepted-reaction", "$q", "$a", review)]
        [change] = run(answer, [QUESTION, answer, SECOND], stored)
        assert isinstance(change, Upsert) and change.review == "approved"
        assert change.pair.answered_by == MAINT


def test_only_the_sender_or_a_moderator_redacts_a_pair_away() -> None:
    pairs = [StoredPair(thread_key("$q"), "maintainer-thread", "$q", "$a")]
    answer = msg("$a", MAINT, "Set trainable.", rel_type="m.thread", relates_to="$q")

    def redaction(sender: str, target: str = "$a") -> RoomEvent:
        return RoomEvent("!r", "$d", sender, 0, "m.room.redaction", None, "", relates_to=target)

    # Anyone may send a redaction event; the server applies it only for these two, and the
    # bot must not remove a pair on the word of anyone else.
    assert run(redaction(BOB), [QUESTION, answer], pairs) == []
    assert run(redaction(ALICE), [QUESTION, answer], pairs) == []
    assert run(redaction(MAINT), [QUESTION, answer], pairs) == [Remove("$a")]
    assert run(redaction(MOD), [QUESTION, answer], pairs) == [Remove("$a")]
    assert run(redaction(ALICE, "$q"), [QUESTION, answer], pairs) == [Remove("$q")]
    # An event the bot never saw: only a moderator's redaction is believed.
    unseen = [StoredPair(thread_key("$q"), "maintainer-thread", "$q", "$x")]
    assert run(redaction(BOB, "$x"), [QUESTION], unseen) == []
    assert run(redaction(MOD, "$x"), [QUESTION], unseen) == [Remove("$x")]

"""What the queue and the question page say about a question, as a maintainer reads it.

The database keeps a question's triage ``status`` (new, suggested, answered_bot,
answered_person, dismissed) and, on its room event, the ``outcome`` the bot's decision left
(``replied``, ``replied:unsure``, ``triage``, ``suppressed:user-cooldown``,
``deferred:room-rate-limit:1``, ``history``, ...). Neither alone says what happened: a question
the bot answered as unsure is back to ``new``, and one it skipped keeps ``suggested`` when it
found any page at all. :func:`queue_status` is the one place that reads both; everything here
is pure, so each case is a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.corpus.past_answers import strip_leading_mentions
from bot.store.dashboard_store import QueueItem

# The leads compose_reply writes when it is not sure (bot/answering/reply.py). A suggestion
# starting with one is never offered as the maintainer's draft, whatever its number says:
# the threshold may have been lowered since. tests/web/test_web_queue_ux.py checks these against
# the real compose_reply, so a reworded lead fails there.
UNSURE_LEADS = ("I'm not sure", "I couldn't find")

# Why a reply did not go out, by the reason part of an outcome, for a person.
_REASONS = {
    "user-cooldown": ("cooldown", "the asker had a reply from the bot moments before"),
    "room-rate-limit": ("room busy", "the room's reply rate limit was reached"),
    "room-busy": ("room busy", "the room was too busy; the asker was told"),
    "too-many-waiting": (
        "too many waiting",
        "the asker already had questions waiting; they were told",
    ),
    "waited-too-long": ("waited too long", "the rate limits held it too long; the asker was told"),
    "triage": ("not mentioned", "the bot replies in the room only when mentioned"),
    "low-confidence": ("below threshold", "the bot was not confident enough to reply"),
    "history": ("old message", "asked before the bot joined the room; it never replies late"),
    "not-a-question": ("not a question", "the message did not read as a question"),
    "feedback": ("not a question", "a reply to the bot that did not read as a question"),
    "answered-meanwhile": ("answered meanwhile", "a person answered while it waited"),
}


@dataclass(frozen=True)
class QueueStatus:
    """``key``: stable, for CSS and tests; ``label``: the badge; ``detail``: one sentence."""

    key: str
    label: str
    detail: str


def _reason(outcome: str | None) -> tuple[str, str] | None:
    """The readable reason an outcome gives for not replying, or None (no such outcome)."""
    if not outcome:
        return None
    head, _, rest = outcome.partition(":")
    if head in ("suppressed", "notice", "deferred"):
        reason = rest.split(":", 1)[0]
        return _REASONS.get(reason, (reason.replace("-", " ") or head, f"held back ({outcome})"))
    if head == "triage":
        return _REASONS["low-confidence" if rest == "low-confidence" else "triage"]
    if head == "ignored":
        why = rest.replace("-", " ") or "ignored"
        return why, f"the bot ignores these messages ({why})"
    return _REASONS.get(outcome)


def is_unsure_text(suggestion: str | None) -> bool:
    return suggestion is not None and suggestion.lstrip().startswith(UNSURE_LEADS)


def is_confident(
    *,
    confidence: float | None,
    threshold: float,
    suggestion: str | None,
    status: str = "new",
    outcome: str | None = None,
) -> bool:
    """Whether the bot's suggestion is one it would stand behind: a confident reply went out
    (``replied``: this includes a Keras 3 note answering an error, below the number), or the
    confidence reaches the threshold. Never an "I'm not sure…" text."""
    if not suggestion or is_unsure_text(suggestion):
        return False
    if outcome == "replied" or status == "answered_bot":
        return True
    return confidence is not None and confidence >= threshold


def queue_status(
    *,
    status: str,
    outcome: str | None,
    confident: bool,
    bot_replied: bool,
    answered_by: str | None = None,
    handled_by: str | None = None,
) -> QueueStatus:
    """What happened to a question, from its triage status and the bot's recorded decision.

    ``confident``: :func:`is_confident` for its suggestion; ``bot_replied``: the bot's own
    reply to it was sent (confident or not).
    """
    if status == "dismissed":
        by = f" by {short_id(handled_by)}" if handled_by else ""
        return QueueStatus("dismissed", "Dismissed", f"dismissed{by} on the dashboard")
    if status == "answered_person":
        who = short_id(answered_by) if answered_by else "a person"
        return QueueStatus("answered_person", f"Answered by {who}", "a person answered it")
    if status == "answered_bot" or outcome == "replied":
        return QueueStatus("replied", "Replied", "the bot answered in the room, confidently")
    if bot_replied or outcome == "replied:unsure":
        return QueueStatus(
            "replied_unsure",
            "Replied unsure",
            "the bot told the asker it was not sure and passed the question to the maintainers",
        )
    if outcome and outcome.startswith("error:"):
        return QueueStatus(
            "failed", "Failed", f"handling it failed ({outcome[6:]}); see the bot's log"
        )
    reason = _reason(outcome)
    if outcome and outcome.startswith("deferred:") and reason:
        return QueueStatus(
            "waiting", f"Waiting: {reason[0]}", f"{reason[1]}; the bot answers when it passes"
        )
    if confident:
        why = f"not posted: {reason[1]}" if reason else "confident and not posted yet"
        return QueueStatus("suggestion_ready", "Suggestion ready", why)
    if reason:
        return QueueStatus("skipped", f"Skipped: {reason[0]}", reason[1])
    if outcome is None:
        return QueueStatus("new", "New", "the bot has not finished with it yet")
    return QueueStatus("skipped", "Skipped", f"no reply ({outcome})")


def percent(value: float) -> str:
    return f"{value:.0%}"


def confidence_why(
    *,
    confidence: float | None,
    threshold: float,
    found: bool,
    top_title: str | None = None,
    top_kind: str | None = None,
) -> str:
    """Why the confidence is what it is, in words a person can check: the page it rests on
    when it is confident ("top page: EarlyStopping"), or that it is below the threshold."""
    if confidence is None:
        return "not scored"
    if not found:
        return "nothing found"
    if confidence < threshold:
        return f"unsure: below {percent(threshold)}"
    if top_title:
        what = "answered before" if top_kind == "thread" else "top page"
        return f"{what}: {clean_title(top_title)}"
    return "confident"


def clean_title(title: str, names: tuple[str, ...] = ()) -> str:
    """A past question's title without the mentions it started with ("@bot how do I…" or,
    given the bot's localparts ``names``, "supportbot: how do I…"): titles of past answers
    indexed before their titles were cleaned keep them. Never empty."""
    text = strip_leading_mentions(" ".join(title.split()))
    lowered = text.lower()
    for name in names:
        if name and lowered.startswith((name.lower() + ":", name.lower() + ",")):
            return text[len(name) + 1 :].strip() or text
    return text


def short_id(matrix_id: str | None) -> str:
    """A user's localpart ("@alice:example.org" -> "alice"); a room id or alias without its
    server ("!keras:example.org" -> "!keras"); anything else as it is."""
    if not matrix_id:
        return ""
    sigil = matrix_id[0]
    local, colon, _server = matrix_id.partition(":")
    if sigil not in "@!#" or not colon or len(local) < 2:
        return matrix_id
    return local[1:] if sigil == "@" else local


@dataclass(frozen=True)
class QueueRow:
    """One row of the queue, with what it says already decided."""

    item: QueueItem
    status: QueueStatus
    why: str


def queue_row(item: QueueItem, threshold: float) -> QueueRow:
    confident = is_confident(
        confidence=item.confidence,
        threshold=threshold,
        suggestion=item.suggestion,
        status=item.status,
        outcome=item.outcome,
    )
    return QueueRow(
        item=item,
        status=queue_status(
            status=item.status,
            outcome=item.outcome,
            confident=confident,
            bot_replied=item.reply_state == "sent",
            answered_by=item.answered_by,
            handled_by=item.handled_by,
        ),
        why=confidence_why(
            confidence=item.confidence,
            threshold=threshold,
            found=item.top_title is not None,
            top_title=item.top_title,
            top_kind=item.top_kind,
        ),
    )

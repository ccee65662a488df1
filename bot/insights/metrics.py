"""The Insights page's numbers, from plain records (see ``bot.insights`` for the definitions).

``compute_insights`` runs in named steps: pick the questions asked in the window, index what
answered or judged them (``RoomActivity``), then tally each question (``_Tally``).
"""

from __future__ import annotations

import difflib
import re
import statistics
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from bot.chat.events import answered_event_ids
from bot.insights.records import (
    EventRecord,
    PostRecord,
    QuestionRecord,
    ReplyRecord,
    VoteRecord,
)
from bot.timeutil import as_utc

DEFAULT_DAYS = 30
SIMILAR_POST_RATIO = 0.9

ANSWERED_STATUSES = frozenset({"answered_bot", "answered_person"})
# Reaction keys arrive with optional emoji presentation selectors and skin tones.
_EMOJI_DECORATIONS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_UP_KEYS = frozenset({"👍", "+1", ":+1:"})
_DOWN_KEYS = frozenset({"👎", "-1", ":-1:"})


# --- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DayCount:
    day: date
    questions: int
    answered: int


# (reason, counts as accepted?, what it means): the order is the order the rules are applied.
ACCEPTANCE_RULES: tuple[tuple[str, bool, str], ...] = (
    ("thumbs_down", False, "a 👎 from a maintainer, or on the bot's reply in the room"),
    ("thumbs_up", True, "a 👍 from a maintainer, or on the bot's reply in the room"),
    ("posted_same", True, "a maintainer posted it from the dashboard nearly unchanged"),
    ("posted_different", False, "a maintainer posted a substantially different answer"),
    ("bot_replied", True, "the bot replied with it confidently and nobody 👎'd it"),
    ("dismissed", False, "the question was dismissed"),
)
_ACCEPTS = {reason: accepts for reason, accepts, _ in ACCEPTANCE_RULES}


@dataclass(frozen=True)
class Acceptance:
    by_reason: dict[str, int]
    undecided: int

    @property
    def accepted(self) -> int:
        return sum(n for reason, n in self.by_reason.items() if _ACCEPTS[reason])

    @property
    def rejected(self) -> int:
        return sum(n for reason, n in self.by_reason.items() if not _ACCEPTS[reason])

    @property
    def rate(self) -> float | None:
        decided = self.accepted + self.rejected
        return self.accepted / decided if decided else None


@dataclass(frozen=True)
class GroupStats:
    """One group of askers (first-time askers, or everyone else) over the window."""

    questions: int
    answered: int
    first_answer_seconds: list[float]  # asked -> first answer (bot or person), when answered
    days: int

    @property
    def per_week(self) -> float:
        return self.questions * 7 / self.days

    @property
    def answered_share(self) -> float | None:
        return self.answered / self.questions if self.questions else None

    @property
    def median_seconds(self) -> float | None:
        s = self.first_answer_seconds
        return statistics.median(s) if s else None


@dataclass(frozen=True)
class Insights:
    days: int
    start: datetime  # inclusive, UTC midnight
    end: datetime  # exclusive: the midnight after today
    per_day: list[DayCount]
    total: int
    answered_bot: int
    answered_person: int
    bot_answer_seconds: list[float]
    person_answer_seconds: list[float]
    acceptance: Acceptance
    # Low-confidence questions, in the order asked (input to ``group_doc_gaps``).
    doc_gap_candidates: list[QuestionRecord] = field(default_factory=list)
    # First-time askers' questions next to everyone else's (None: not computed).
    newcomers: GroupStats | None = None
    returning: GroupStats | None = None

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    @property
    def answered(self) -> int:
        return self.answered_bot + self.answered_person

    @property
    def answered_share(self) -> float | None:
        return self.answered / self.total if self.total else None

    @property
    def bot_median_seconds(self) -> float | None:
        return statistics.median(self.bot_answer_seconds) if self.bot_answer_seconds else None

    @property
    def person_median_seconds(self) -> float | None:
        return statistics.median(self.person_answer_seconds) if self.person_answer_seconds else None


# --- single rules -----------------------------------------------------------------------------
def window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """[start, end) covering the last ``days`` UTC calendar days, today included."""
    if days < 1:
        raise ValueError("days must be at least 1")
    today = as_utc(now).date()
    start = datetime.combine(today - timedelta(days=days - 1), dtime(), UTC)
    return start, start + timedelta(days=days)


def _reaction_key(body: str) -> str:
    return _EMOJI_DECORATIONS.sub("", body.strip())


def nearly_same(a: str, b: str) -> bool:
    """``difflib`` ratio ≥ 0.9 after collapsing whitespace (reflowing a text is no change)."""
    # autojunk would treat every common character of a long text as junk and undercount.
    matcher = difflib.SequenceMatcher(None, " ".join(a.split()), " ".join(b.split()), False)
    # The cheap upper bounds settle most clearly different texts without the quadratic pass.
    return (
        matcher.real_quick_ratio() >= SIMILAR_POST_RATIO
        and matcher.quick_ratio() >= SIMILAR_POST_RATIO
        and matcher.ratio() >= SIMILAR_POST_RATIO
    )


def classify_suggestion(
    question: QuestionRecord,
    *,
    votes: Sequence[int],
    posts: Sequence[PostRecord],
    confident_reply_sent: bool,
) -> str | None:
    """The acceptance rule (a key of ``ACCEPTANCE_RULES``) deciding this question, or None.

    ``votes`` are +1/-1 from the dashboard and from 👍/👎 reactions on the bot's confident reply;
    ``posts`` are the question's *sent* dashboard posts.
    """
    if not question.has_suggestion:
        return None
    if any(v < 0 for v in votes):
        return "thumbs_down"
    if any(v > 0 for v in votes):
        return "thumbs_up"
    if posts:
        suggestion = question.suggestion or ""
        if any(nearly_same(suggestion, p.body) for p in posts):
            return "posted_same"
        return "posted_different"
    if confident_reply_sent:
        return "bot_replied"
    if question.status == "dismissed":
        return "dismissed"
    return None


def _seconds_between(start: datetime, end: datetime) -> float:
    # Clocks differ (homeserver origin_ts vs. our sent_at): never report a negative wait.
    return max(0.0, (as_utc(end) - as_utc(start)).total_seconds())


def _confident_reply(q: QuestionRecord, reply: ReplyRecord | None) -> ReplyRecord | None:
    """The bot's reply if it was sent and was an answer (the unsure path leaves status new)."""
    confident = q.status == "answered_bot" or q.answered_by == "bot"
    if (
        confident
        and reply is not None
        and reply.state == "sent"
        and reply.posted_by == "bot"
        and reply.sent_at is not None
    ):
        return reply
    return None


def _bot_answer_time(q: QuestionRecord, confident_reply: ReplyRecord | None) -> datetime | None:
    """When the bot answered: its confident reply's send time, else ``answered_at``."""
    if confident_reply is not None and confident_reply.sent_at is not None:
        return confident_reply.sent_at
    if q.answered_by == "bot" and q.answered_at is not None:
        return q.answered_at
    return None


def _first_person_answer(
    q: QuestionRecord,
    reply: ReplyRecord | None,
    answers: Sequence[EventRecord],
    sent_posts: Sequence[PostRecord],
    bots: Collection[str],
) -> datetime | None:
    """The earliest human answer; ``answers`` are already free of the bot's own events."""
    times = [e.at for e in answers if e.sender != q.asker]
    for post in sent_posts:
        posted_at = post.sent_at or post.created_at
        if posted_at is not None:
            times.append(posted_at)
    if reply is not None and reply.state == "sent" and reply.posted_by != "bot" and reply.sent_at:
        times.append(reply.sent_at)
    if q.answered_at is not None and q.answered_by and q.answered_by not in {"bot", *bots}:
        times.append(q.answered_at)
    return min((as_utc(t) for t in times), default=None)


def _reaction_votes(reactions: Sequence[EventRecord]) -> list[int]:
    votes = []
    for reaction in reactions:
        key = _reaction_key(reaction.body)
        if key in _UP_KEYS:
            votes.append(1)
        elif key in _DOWN_KEYS:
            votes.append(-1)
    return votes


# --- the steps of compute_insights ------------------------------------------------------------
def _asked_between(
    questions: Sequence[QuestionRecord], start: datetime, end: datetime
) -> list[QuestionRecord]:
    """The questions asked in [start, end), in the order asked."""
    asked = [q for q in questions if start <= as_utc(q.asked_at) < end]
    asked.sort(key=lambda q: (as_utc(q.asked_at), q.event_id))
    return asked


@dataclass(frozen=True)
class RoomActivity:
    """What answered or judged the questions, indexed by question (or by the bot's reply, for
    reactions). Owns the rule of which room events count: not the bot's own, no notices or
    edits, and only replies or thread messages to a question of the window."""

    bots: frozenset[str]
    reply_of: dict[str, ReplyRecord]
    sent_posts: dict[str, list[PostRecord]]
    dashboard_votes: dict[str, list[int]]
    answers_to: dict[str, list[EventRecord]]
    reactions_to: dict[str, list[EventRecord]]

    @classmethod
    def index(
        cls,
        question_ids: Collection[str],
        replies: Sequence[ReplyRecord],
        posts: Sequence[PostRecord],
        votes: Sequence[VoteRecord],
        events: Sequence[EventRecord],
        bot_users: Collection[str],
    ) -> RoomActivity:
        sent_posts: dict[str, list[PostRecord]] = defaultdict(list)
        for p in posts:
            if p.state == "sent":
                sent_posts[p.question_event_id].append(p)
        dashboard_votes: dict[str, list[int]] = defaultdict(list)
        for v in votes:
            dashboard_votes[v.question_event_id].append(v.vote)
        bots = frozenset(bot_users)
        # The bot's own events: its replies and the dashboard's posts (sent as the bot).
        bot_events = {r.reply_event_id for r in replies if r.reply_event_id}
        bot_events |= {p.reply_event_id for p in posts if p.reply_event_id}
        answers_to, reactions_to = _room_responses(
            [e for e in events if e.sender not in bots and e.event_id not in bot_events],
            question_ids,
        )
        return cls(
            bots=bots,
            reply_of={r.question_event_id: r for r in replies},
            sent_posts=sent_posts,
            dashboard_votes=dashboard_votes,
            answers_to=answers_to,
            reactions_to=reactions_to,
        )

    def votes_on(self, q: QuestionRecord, confident_reply: ReplyRecord | None) -> list[int]:
        """Dashboard votes on the question, then 👍/👎 reactions on the bot's confident reply."""
        judged = list(self.dashboard_votes.get(q.event_id, ()))
        if confident_reply is not None and confident_reply.reply_event_id:
            judged += _reaction_votes(self.reactions_to.get(confident_reply.reply_event_id, ()))
        return judged


def _room_responses(
    events: Sequence[EventRecord], question_ids: Collection[str]
) -> tuple[dict[str, list[EventRecord]], dict[str, list[EventRecord]]]:
    """(answers by question, reactions by the event they react to) among people's events."""
    answers_to: dict[str, list[EventRecord]] = defaultdict(list)
    reactions_to: dict[str, list[EventRecord]] = defaultdict(list)
    for e in events:
        if e.event_type == "m.reaction":
            if e.relates_to:
                reactions_to[e.relates_to].append(e)
            continue
        # Notices are automated by convention and edits only repeat an earlier message.
        if e.event_type != "m.room.message" or e.msgtype == "m.notice" or e.rel_type == "m.replace":
            continue
        for target in answered_event_ids(e):
            if target in question_ids:
                answers_to[target].append(e)
    return answers_to, reactions_to


@dataclass
class _Tally:
    """The running counts over the questions of the window, one ``add`` per question."""

    per_day: dict[date, list[int]]  # day -> [asked, answered]
    answered_bot: int = 0
    answered_person: int = 0
    bot_seconds: list[float] = field(default_factory=list)
    person_seconds: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(
        default_factory=lambda: {reason: 0 for reason, _, _ in ACCEPTANCE_RULES}
    )
    undecided: int = 0
    gaps: list[QuestionRecord] = field(default_factory=list)
    # [asked, answered] and the seconds to a first answer, for first-time askers / the rest.
    groups: dict[bool, list[int]] = field(default_factory=lambda: {True: [0, 0], False: [0, 0]})
    group_seconds: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})

    @classmethod
    def for_days(cls, start: datetime, days: int) -> _Tally:
        return cls({(start + timedelta(days=i)).date(): [0, 0] for i in range(days)})

    def add(self, q: QuestionRecord, activity: RoomActivity, reply_threshold: float) -> None:
        asked_at = as_utc(q.asked_at)
        bucket = self.per_day[asked_at.date()]
        bucket[0] += 1
        if q.status in ANSWERED_STATUSES:
            bucket[1] += 1
        self.answered_bot += q.status == "answered_bot"
        self.answered_person += q.status == "answered_person"

        reply = activity.reply_of.get(q.event_id)
        confident_reply = _confident_reply(q, reply)
        bot_answered = _bot_answer_time(q, confident_reply)
        if bot_answered is not None:
            self.bot_seconds.append(_seconds_between(asked_at, bot_answered))
        sent_posts = activity.sent_posts.get(q.event_id, [])
        answers = activity.answers_to.get(q.event_id, [])
        first = _first_person_answer(q, reply, answers, sent_posts, activity.bots)
        if first is not None:
            self.person_seconds.append(_seconds_between(asked_at, first))
        self._add_to_group(q, asked_at, [t for t in (bot_answered, first) if t is not None])

        reason = classify_suggestion(
            q,
            votes=activity.votes_on(q, confident_reply),
            posts=sent_posts,
            confident_reply_sent=confident_reply is not None,
        )
        if reason is not None:
            self.reasons[reason] += 1
        elif q.has_suggestion:
            self.undecided += 1

        if q.status != "dismissed" and (q.confidence is None or q.confidence < reply_threshold):
            self.gaps.append(q)

    def _add_to_group(self, q: QuestionRecord, asked_at: datetime, answers: list[datetime]) -> None:
        counts = self.groups[q.first_question]
        counts[0] += 1
        if q.status in ANSWERED_STATUSES:
            counts[1] += 1
        if answers:
            self.group_seconds[q.first_question].append(_seconds_between(asked_at, min(answers)))

    def group(self, first: bool, days: int) -> GroupStats:
        asked, answered = self.groups[first]
        return GroupStats(asked, answered, self.group_seconds[first], days)


def compute_insights(
    questions: Sequence[QuestionRecord],
    replies: Sequence[ReplyRecord],
    posts: Sequence[PostRecord],
    votes: Sequence[VoteRecord],
    events: Sequence[EventRecord],
    *,
    bot_users: Collection[str],
    now: datetime,
    days: int = DEFAULT_DAYS,
    reply_threshold: float = 0.6,
) -> Insights:
    """All numbers of the Insights page (doc gaps still to be grouped); see ``bot.insights``."""
    start, end = window(now, days)
    asked = _asked_between(questions, start, end)
    ids = {q.event_id for q in asked}
    activity = RoomActivity.index(ids, replies, posts, votes, events, bot_users)
    tally = _Tally.for_days(start, days)
    for q in asked:
        tally.add(q, activity, reply_threshold)
    return Insights(
        days=days,
        start=start,
        end=end,
        per_day=[DayCount(day, n, a) for day, (n, a) in tally.per_day.items()],
        total=len(asked),
        answered_bot=tally.answered_bot,
        answered_person=tally.answered_person,
        bot_answer_seconds=tally.bot_seconds,
        person_answer_seconds=tally.person_seconds,
        acceptance=Acceptance(by_reason=tally.reasons, undecided=tally.undecided),
        doc_gap_candidates=tally.gaps,
        newcomers=tally.group(True, days),
        returning=tally.group(False, days),
    )


# --- presentation helpers ---------------------------------------------------------------------
def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_share(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"

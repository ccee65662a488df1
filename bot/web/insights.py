"""The dashboard's Insights page: how busy the room is, how well questions get answered, how
often the bot's suggestions are taken, and which docs seem to be missing.

Everything is computed by pure functions over plain records (``compute_insights``,
``group_doc_gaps``) so it can be checked by hand; ``insights_page`` only loads rows and renders.

Definitions (the page states the same):

* **Window**: the last ``days`` UTC calendar days, today included. A question belongs to the day
  it was *asked* (its room event's ``origin_ts``), not the day the bot stored it.
* **Answered share**: questions with status ``answered_bot`` or ``answered_person`` over all
  questions asked in the window (dismissed ones included in the denominator).
* **Time to first answer by the bot**: from asking to ``replies.sent_at`` of the bot's sent
  *confident* reply (status ``answered_bot``, or ``answered_by == "bot"``; falls back to
  ``answered_at`` when there is no reply row). The "I'm not sure" note is not an answer: that path
  leaves the status ``new``.
* **Time to first answer by a person**: from asking to the earliest of: a message in the
  question's thread (``m.thread`` relating to it) or a Matrix reply to it, sent by someone other
  than the asker and the bot (notices, edits and the bot's own events excluded); a sent dashboard
  post for the question; a sent reply row posted by someone other than the bot; the question's
  ``answered_at`` when ``answered_by`` is a person.
* **Suggestion acceptance**, over questions that got a suggestion (a stored suggestion with at
  least one source); the first rule that applies decides:

  1. a 👎 (a maintainer's dashboard vote, or a reaction on the bot's confident reply in the
     room) → rejected;
  2. a 👍 (same two places) → accepted;
  3. a maintainer posted from the dashboard: accepted when some sent post is the suggestion
     nearly unchanged (``difflib`` ratio ≥ 0.9 after collapsing whitespace), else rejected;
  4. the bot's confident reply was sent (and, by rule 1, not 👎'd) → accepted;
  5. dismissed → rejected;
  6. otherwise undecided, left out of the rate.

  rate = accepted / (accepted + rejected).
* **Doc gaps**: questions in the window whose confidence is below ``reply_threshold`` (or
  missing), not dismissed, grouped by meaning: in the order asked, each joins the first group whose
  seed (first question) has cosine ≥ 0.6 with it, else seeds a new group. Each group is shown by
  its most central question (highest mean cosine to the others). Without an encoder, questions
  group by identical normalised text.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import statistics
import unicodedata
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from urllib.parse import quote

import numpy as np
from aiohttp import web
from markupsafe import Markup
from sqlalchemy import ColumnElement, and_, or_, select

from bot.corpus.documents import content_hash
from bot.store.database import Database
from bot.store.embedding_cache import cached_embeddings, store_embeddings
from bot.store.models import (
    DashboardPostRow,
    QuestionRow,
    ReplyRow,
    RoomEventRow,
    SuggestionVoteRow,
)
from bot.timeutil import utc_from_ms
from bot.web.charts import BarPoint, bar_chart_svg
from bot.web.context import CTX_KEY, WebContext
from bot.web.templating import render

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
MAX_DAYS = 365
DAY_CHOICES = (7, 30, 90, 365)
SIMILAR_POST_RATIO = 0.9
DOC_GAP_THRESHOLD = 0.6
# Embedding runs in the service's one CPU worker, which also answers the room: bound the work a
# page view can queue there. The most recent questions are the ones worth grouping.
DOC_GAP_MAX_TEXTS = 500
_TIE = 1e-6  # cosines closer than this are equal (float32 embeddings)
DOC_GAP_GROUPS_SHOWN = 10
DOC_GAP_LINKS_SHOWN = 20
_IN_BATCH = 500  # SQLite caps bound parameters per statement

ANSWERED_STATUSES = frozenset({"answered_bot", "answered_person"})
# Reaction keys arrive with optional emoji presentation selectors and skin tones.
_EMOJI_DECORATIONS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_UP_KEYS = frozenset({"👍", "+1", ":+1:"})
_DOWN_KEYS = frozenset({"👎", "-1", ":-1:"})


# --- plain records (what the pure functions read) ---------------------------------------------
@dataclass(frozen=True)
class QuestionRecord:
    event_id: str
    asker: str
    text: str
    status: str
    asked_at: datetime
    confidence: float | None = None
    suggestion: str | None = None
    has_sources: bool = False
    answered_at: datetime | None = None
    answered_by: str | None = None

    @property
    def href(self) -> str:
        return "/questions/" + quote(self.event_id, safe="")

    @property
    def has_suggestion(self) -> bool:
        # Without sources the stored "suggestion" is only "I couldn't find anything": nothing
        # a maintainer could accept.
        return self.has_sources and bool(self.suggestion and self.suggestion.strip())


@dataclass(frozen=True)
class ReplyRecord:
    question_event_id: str
    state: str  # pending / sent / rejected
    reply_event_id: str | None = None
    sent_at: datetime | None = None
    posted_by: str = "bot"


@dataclass(frozen=True)
class PostRecord:
    question_event_id: str
    state: str  # pending / sent / rejected
    body: str
    posted_by: str = ""
    reply_event_id: str | None = None
    sent_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class VoteRecord:
    question_event_id: str
    user_name: str
    vote: int  # +1 / -1


@dataclass(frozen=True)
class EventRecord:
    """A room event that may answer a question (a message) or judge the bot's reply (a reaction)."""

    event_id: str
    sender: str
    origin_ts: int  # ms since the epoch
    event_type: str = "m.room.message"
    msgtype: str | None = "m.text"
    body: str = ""
    rel_type: str | None = None
    relates_to: str | None = None
    in_reply_to: str | None = None

    @property
    def at(self) -> datetime:
        return utc_from_ms(self.origin_ts)


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


# --- pure computations ------------------------------------------------------------------------
def to_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC); everything else is converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: keep the wall time
        return moment.replace(tzinfo=UTC)


def window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """[start, end) covering the last ``days`` UTC calendar days, today included."""
    if days < 1:
        raise ValueError("days must be at least 1")
    today = to_utc(now).date()
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
    return max(0.0, (to_utc(end) - to_utc(start)).total_seconds())


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
    return min((to_utc(t) for t in times), default=None)


def _reaction_votes(reactions: Sequence[EventRecord]) -> list[int]:
    votes = []
    for reaction in reactions:
        key = _reaction_key(reaction.body)
        if key in _UP_KEYS:
            votes.append(1)
        elif key in _DOWN_KEYS:
            votes.append(-1)
    return votes


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
    """All numbers of the Insights page (doc gaps still to be grouped); see the module doc."""
    start, end = window(now, days)
    asked = [q for q in questions if start <= to_utc(q.asked_at) < end]
    asked.sort(key=lambda q: (to_utc(q.asked_at), q.event_id))
    ids = {q.event_id for q in asked}

    reply_of = {r.question_event_id: r for r in replies}
    sent_posts: dict[str, list[PostRecord]] = defaultdict(list)
    for p in posts:
        if p.state == "sent":
            sent_posts[p.question_event_id].append(p)
    dashboard_votes: dict[str, list[int]] = defaultdict(list)
    for v in votes:
        dashboard_votes[v.question_event_id].append(v.vote)

    # The bot's own events: its replies and the dashboard's posts (sent as the bot).
    bots = set(bot_users)
    bot_events = {r.reply_event_id for r in replies if r.reply_event_id}
    bot_events |= {p.reply_event_id for p in posts if p.reply_event_id}
    answers_to: dict[str, list[EventRecord]] = defaultdict(list)
    reactions_to: dict[str, list[EventRecord]] = defaultdict(list)
    for e in events:
        if e.sender in bots or e.event_id in bot_events:
            continue
        if e.event_type == "m.reaction":
            if e.relates_to:
                reactions_to[e.relates_to].append(e)
            continue
        # Notices are automated by convention and edits only repeat an earlier message.
        if e.event_type != "m.room.message" or e.msgtype == "m.notice" or e.rel_type == "m.replace":
            continue
        targets = {e.in_reply_to}
        if e.rel_type == "m.thread":
            targets.add(e.relates_to)
        for target in targets:
            if target in ids:
                answers_to[target].append(e)

    per_day: dict[date, list[int]] = {
        (start + timedelta(days=i)).date(): [0, 0] for i in range(days)
    }
    answered_bot = answered_person = 0
    bot_seconds: list[float] = []
    person_seconds: list[float] = []
    reasons: dict[str, int] = {reason: 0 for reason, _, _ in ACCEPTANCE_RULES}
    undecided = 0
    gaps: list[QuestionRecord] = []

    for q in asked:
        asked_at = to_utc(q.asked_at)
        bucket = per_day[asked_at.date()]
        bucket[0] += 1
        if q.status in ANSWERED_STATUSES:
            bucket[1] += 1
        answered_bot += q.status == "answered_bot"
        answered_person += q.status == "answered_person"

        reply = reply_of.get(q.event_id)
        confident_reply = _confident_reply(q, reply)
        if confident_reply is not None and confident_reply.sent_at is not None:
            bot_seconds.append(_seconds_between(asked_at, confident_reply.sent_at))
        elif q.answered_by == "bot" and q.answered_at is not None:
            bot_seconds.append(_seconds_between(asked_at, q.answered_at))

        first = _first_person_answer(
            q, reply, answers_to.get(q.event_id, ()), sent_posts.get(q.event_id, ()), bots
        )
        if first is not None:
            person_seconds.append(_seconds_between(asked_at, first))

        judged = list(dashboard_votes.get(q.event_id, ()))
        if confident_reply is not None and confident_reply.reply_event_id:
            judged += _reaction_votes(reactions_to.get(confident_reply.reply_event_id, ()))
        reason = classify_suggestion(
            q,
            votes=judged,
            posts=sent_posts.get(q.event_id, ()),
            confident_reply_sent=confident_reply is not None,
        )
        if reason is not None:
            reasons[reason] += 1
        elif q.has_suggestion:
            undecided += 1

        if q.status != "dismissed" and (q.confidence is None or q.confidence < reply_threshold):
            gaps.append(q)

    return Insights(
        days=days,
        start=start,
        end=end,
        per_day=[DayCount(day, n, a) for day, (n, a) in per_day.items()],
        total=len(asked),
        answered_bot=answered_bot,
        answered_person=answered_person,
        bot_answer_seconds=bot_seconds,
        person_answer_seconds=person_seconds,
        acceptance=Acceptance(by_reason=reasons, undecided=undecided),
        doc_gap_candidates=gaps,
    )


# --- doc gaps ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    members: tuple[int, ...]  # indices into the input, ascending; members[0] seeded the group
    central: int  # the member with the highest mean cosine to the group (earliest on a tie)

    @property
    def size(self) -> int:
        return len(self.members)


def normalise_text(text: str) -> str:
    """Case, punctuation and spacing folded: "How do I X?" and "how do i x" are one question."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = re.sub(r"[\W_]+", " ", folded).strip()
    return words or folded.strip()


def _sorted_groups(groups: list[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: (-g.size, g.members[0]))


def group_doc_gaps(
    texts: Sequence[str], vectors: np.ndarray | None, threshold: float = DOC_GAP_THRESHOLD
) -> list[Group]:
    """Greedy single pass: each text joins the first group (in creation order) whose seed has
    cosine ≥ ``threshold`` with it, else seeds a new one. Largest groups first.

    Seeds, not running centroids, decide membership so that a group cannot drift away from
    what it started as, and the result depends only on the order of the input. With
    ``vectors`` None, texts group by ``normalise_text`` instead.
    """
    if vectors is None:
        by_key: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            by_key.setdefault(normalise_text(text), []).append(i)
        return _sorted_groups([Group(tuple(m), m[0]) for m in by_key.values()])
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but vectors of shape {vectors.shape}")
    unit = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms > 0, norms, 1.0)  # a zero vector stays zero: joins nothing
    seeds = np.empty_like(unit)
    members: list[list[int]] = []
    for i, vector in enumerate(unit):
        if members:
            hits = np.flatnonzero(seeds[: len(members)] @ vector >= threshold)
            if hits.size:
                members[int(hits[0])].append(i)
                continue
        seeds[len(members)] = vector
        members.append([i])
    groups = []
    for m in members:
        sub = unit[m]
        closeness = (sub @ sub.T).mean(axis=1)
        # Ties (always, in a pair) go to the earlier question, whatever the float rounding.
        central = int(np.flatnonzero(closeness >= closeness.max() - _TIE)[0])
        groups.append(Group(tuple(m), m[central]))
    return _sorted_groups(groups)


@dataclass(frozen=True)
class DocGap:
    representative: QuestionRecord
    members: list[QuestionRecord]  # in the order asked

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def last_asked(self) -> datetime:
        return max(to_utc(q.asked_at) for q in self.members)


def doc_gaps_from_groups(
    candidates: Sequence[QuestionRecord], groups: Sequence[Group], limit: int
) -> list[DocGap]:
    return [
        DocGap(candidates[g.central], [candidates[i] for i in g.members]) for g in groups[:limit]
    ]


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


def questions_chart(insights: Insights) -> Markup:
    points = [
        BarPoint(
            label=f"{d.day:%b} {d.day.day}",
            value=d.questions,
            tooltip=(
                f"{d.day.isoformat()}: {d.questions} question{'s' if d.questions != 1 else ''}"
                f", {d.answered} answered"
            ),
        )
        for d in insights.per_day
    ]
    return bar_chart_svg(points, title=f"Questions per day, last {insights.days} days (UTC)")


# --- loading ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedRows:
    questions: list[QuestionRecord]
    replies: list[ReplyRecord]
    posts: list[PostRecord]
    votes: list[VoteRecord]
    events: list[EventRecord]


def _batches(values: Sequence[str]) -> list[list[str]]:
    return [list(values[i : i + _IN_BATCH]) for i in range(0, len(values), _IN_BATCH)]


def _opt_utc(moment: datetime | None) -> datetime | None:
    return to_utc(moment) if moment is not None else None


def load_rows(db: Database, since: datetime) -> LoadedRows:
    """Questions asked since ``since`` and everything that answered or judged them (blocking)."""
    since_ms = int(to_utc(since).timestamp() * 1000)
    with db.session() as s:
        rows = s.execute(
            select(QuestionRow, RoomEventRow.origin_ts)
            .join(RoomEventRow, RoomEventRow.event_id == QuestionRow.event_id)
            .where(RoomEventRow.origin_ts >= since_ms)
        ).all()
        questions = [
            QuestionRecord(
                event_id=q.event_id,
                asker=q.asker,
                text=q.text,
                status=q.status,
                asked_at=utc_from_ms(ts),
                confidence=q.confidence,
                suggestion=q.suggestion,
                has_sources=bool(q.sources),
                answered_at=_opt_utc(q.answered_at),
                answered_by=q.answered_by,
            )
            for q, ts in rows
        ]
        ids = [q.event_id for q in questions]
        replies: list[ReplyRecord] = []
        posts: list[PostRecord] = []
        votes: list[VoteRecord] = []
        events: dict[str, EventRecord] = {}

        def keep_events(condition: ColumnElement[bool]) -> None:
            for e in s.scalars(select(RoomEventRow).where(condition)):
                events[e.event_id] = EventRecord(
                    event_id=e.event_id,
                    sender=e.sender,
                    origin_ts=e.origin_ts,
                    event_type=e.event_type,
                    msgtype=e.msgtype,
                    body=e.body if e.event_type == "m.reaction" else "",
                    rel_type=e.rel_type,
                    relates_to=e.relates_to,
                    in_reply_to=e.in_reply_to,
                )

        for batch in _batches(ids):
            replies += [
                ReplyRecord(
                    question_event_id=r.question_event_id,
                    state=r.state,
                    reply_event_id=r.reply_event_id,
                    sent_at=_opt_utc(r.sent_at),
                    posted_by=r.posted_by,
                )
                for r in s.scalars(select(ReplyRow).where(ReplyRow.question_event_id.in_(batch)))
            ]
            posts += [
                PostRecord(
                    question_event_id=p.question_event_id,
                    state=p.state,
                    body=p.body,
                    posted_by=p.posted_by,
                    reply_event_id=p.reply_event_id,
                    sent_at=_opt_utc(p.sent_at),
                    created_at=_opt_utc(p.created_at),
                )
                for p in s.scalars(
                    select(DashboardPostRow).where(DashboardPostRow.question_event_id.in_(batch))
                )
            ]
            votes += [
                VoteRecord(v.question_event_id, v.user_name, v.vote)
                for v in s.scalars(
                    select(SuggestionVoteRow).where(SuggestionVoteRow.question_event_id.in_(batch))
                )
            ]
            # Answers come after their question, so older events need not be read.
            keep_events(
                and_(
                    RoomEventRow.origin_ts >= since_ms,
                    or_(RoomEventRow.relates_to.in_(batch), RoomEventRow.in_reply_to.in_(batch)),
                )
            )
        reply_ids = [r.reply_event_id for r in replies if r.reply_event_id]
        for batch in _batches(reply_ids):
            keep_events(
                and_(RoomEventRow.event_type == "m.reaction", RoomEventRow.relates_to.in_(batch))
            )
    return LoadedRows(questions, replies, posts, votes, list(events.values()))


def bot_users(ctx: WebContext) -> set[str]:
    """Both identities: a database may hold events from the local room and from Matrix."""
    return {u for u in (ctx.settings.matrix_user_id, ctx.settings.local_bot_user) if u}


def parse_days(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_DAYS
    try:
        days = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="days must be a whole number of days") from None
    return min(MAX_DAYS, max(1, days))


# Texts embedded per job on the CPU worker: that thread also answers the room, so a question
# arriving while the doc gaps are embedded waits for one batch (~0.3 s on 2 cores), not all.
EMBED_BATCH = 32


def _embedding_model(ctx: WebContext) -> str:
    manifest = ctx.index_manifest() if ctx.index_manifest is not None else {}
    return str(manifest.get("model") or ctx.settings.embedding_model)


async def _embed(ctx: WebContext, texts: list[str]) -> np.ndarray | None:
    """Unit vectors for ``texts``: from the embedding cache (keyed by model and text hash, as
    the index builder's chunks), the rest encoded in small jobs and cached for the next view."""
    encode = ctx.encode
    if encode is None or not texts:
        return None
    model = _embedding_model(ctx)
    hashes = [content_hash(t) for t in texts]
    try:
        found = await asyncio.to_thread(cached_embeddings, ctx.db, model, hashes)
        missing = list(dict.fromkeys(h for h in hashes if h not in found))
        text_of = dict(zip(hashes, texts, strict=True))
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]

            def job(batch: list[str] = batch) -> np.ndarray:
                return encode([text_of[h] for h in batch])

            if ctx.run_cpu is not None:
                result = await ctx.run_cpu(job)
            else:
                result = await asyncio.to_thread(job)
            vectors = np.asarray(result, dtype=np.float32)
            fresh.update(zip(batch, vectors, strict=True))
        if fresh:
            await asyncio.to_thread(store_embeddings, ctx.db, model, fresh)
    except Exception:  # the page still shows the other numbers, grouped by text instead
        log.exception("embedding %d questions for the doc gaps failed", len(texts))
        return None
    found.update(fresh)
    return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)


async def insights_page(request: web.Request) -> web.StreamResponse:
    """GET /insights[?days=N]"""
    ctx = request.app[CTX_KEY]
    days = parse_days(request.query.get("days"))
    now = datetime.now(UTC)
    start, _ = window(now, days)
    rows = await asyncio.to_thread(load_rows, ctx.db, start)
    insights = compute_insights(
        rows.questions,
        rows.replies,
        rows.posts,
        rows.votes,
        rows.events,
        bot_users=bot_users(ctx),
        now=now,
        days=days,
        reply_threshold=ctx.settings.reply_threshold,
    )
    candidates = insights.doc_gap_candidates[-DOC_GAP_MAX_TEXTS:]
    texts = [q.text for q in candidates]
    vectors = await _embed(ctx, texts)
    groups = group_doc_gaps(texts, vectors, DOC_GAP_THRESHOLD)
    gaps = doc_gaps_from_groups(candidates, groups, DOC_GAP_GROUPS_SHOWN)
    return render(
        request,
        "insights.html",
        {
            "insights": insights,
            "chart": questions_chart(insights),
            "gaps": gaps,
            "gap_candidates": len(insights.doc_gap_candidates),
            "gap_grouped": len(candidates),
            "grouped_by_meaning": vectors is not None,
            "encoder_available": ctx.encode is not None,
            "gap_threshold": DOC_GAP_THRESHOLD,
            "reply_threshold": ctx.settings.reply_threshold,
            "links_shown": DOC_GAP_LINKS_SHOWN,
            "similar_ratio": SIMILAR_POST_RATIO,
            "rules": ACCEPTANCE_RULES,
            "day_choices": DAY_CHOICES,
            "duration": format_duration,
            "share": format_share,
        },
    )

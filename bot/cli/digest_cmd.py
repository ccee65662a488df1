"""``supportbot digest``: the maintainers' week as Markdown, printed (issue 13, item 3)."""

from __future__ import annotations

import argparse

from bot.cli.loaders import settings_from_args

DOC_GAPS_SHOWN = 3


def cmd_digest(args: argparse.Namespace) -> int:
    """Print the digest of the last ``--days`` days against the ``--days`` before them."""
    from datetime import UTC, datetime, timedelta

    from bot.corpus.past_answers import matrix_permalink
    from bot.insights.digest import build_digest
    from bot.insights.doc_gaps import doc_gaps_from_groups, group_doc_gaps
    from bot.insights.metrics import Insights, compute_insights, window
    from bot.store.database import Database
    from bot.store.insights_queries import load_rows, open_questions

    settings = settings_from_args(args)
    now, days = datetime.now(UTC), args.days
    db = Database(settings.resolved_database_url)
    try:
        db.create_schema()
        start_before, _ = window(now - timedelta(days=days), days)
        rows = load_rows(db, start_before, regulars=settings.regular_users)
        waiting, total = open_questions(db, limit=args.limit, regulars=settings.regular_users)
    finally:
        db.close()

    def period(at: datetime) -> Insights:
        return compute_insights(
            rows.questions,
            rows.replies,
            rows.posts,
            rows.votes,
            rows.events,
            bot_users=settings.bot_user_ids,
            now=at,
            days=days,
            reply_threshold=settings.reply_threshold,
        )

    this, before = period(now), period(now - timedelta(days=days))
    # Grouped by identical text here: the CLI does not load the embedding model for this.
    candidates = this.doc_gap_candidates
    gaps = doc_gaps_from_groups(
        candidates, group_doc_gaps([q.text for q in candidates], None), DOC_GAPS_SHOWN
    )
    print(
        build_digest(
            this,
            before,
            waiting,
            total,
            gaps,
            now=now,
            link=lambda q: matrix_permalink(q.room_id, q.event_id),
        ),
        end="",
    )
    return 0

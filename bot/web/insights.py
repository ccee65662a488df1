"""The dashboard's Insights page: loads the rows (``bot.store.insights_queries``), computes the
numbers (``bot.insights``, where the definitions are), embeds the doc-gap candidates through
the embedding cache, and renders."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from aiohttp import web
from markupsafe import Markup

from bot.corpus.documents import content_hash
from bot.insights.doc_gaps import DOC_GAP_THRESHOLD, doc_gaps_from_groups, group_doc_gaps
from bot.insights.metrics import (
    ACCEPTANCE_RULES,
    DEFAULT_DAYS,
    SIMILAR_POST_RATIO,
    Insights,
    format_duration,
    format_share,
    window,
)
from bot.store.embedding_cache import cached_embeddings, store_embeddings
from bot.store.insights_queries import load_rows
from bot.web.charts import BarPoint, bar_chart_svg
from bot.web.context import CTX_KEY, WebContext
from bot.web.templating import render

log = logging.getLogger(__name__)

MAX_DAYS = 365
DAY_CHOICES = (7, 30, 90, 365)
# Embedding runs in the service's one CPU worker, which also answers the room: bound the work a
# page view can queue there. The most recent questions are the ones worth grouping.
DOC_GAP_MAX_TEXTS = 500
DOC_GAP_GROUPS_SHOWN = 10
DOC_GAP_LINKS_SHOWN = 20
# Texts embedded per job on the CPU worker: that thread also answers the room, so a question
# arriving while the doc gaps are embedded waits for one batch (~0.3 s on 2 cores), not all.
EMBED_BATCH = 32


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


def parse_days(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_DAYS
    try:
        days = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="days must be a whole number of days") from None
    return min(MAX_DAYS, max(1, days))


def _embedding_model(ctx: WebContext) -> str:
    manifest = ctx.index_manifest() if ctx.index_manifest is not None else {}
    return str(manifest.get("model") or ctx.settings.embedding_model)


async def _encode_missing(
    ctx: WebContext,
    encode: Callable[[list[str]], np.ndarray],
    missing: list[str],
    text_of: dict[str, str],
) -> dict[str, np.ndarray]:
    """Vectors for the ``missing`` hashes, encoded in small jobs on the CPU worker."""
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
    return fresh


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
        fresh = await _encode_missing(ctx, encode, missing, text_of)
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
    rows = await asyncio.to_thread(load_rows, ctx.db, start, regulars=ctx.settings.regular_users)
    insights = rows.insights(ctx.settings, now=now, days=days)
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

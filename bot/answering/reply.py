"""Turn ranked documents into the suggested reply (Markdown + a JSON-able structure)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from bot.answering.render import link_target
from bot.retrieval.search import Hit, SearchResult
from bot.retrieval.text import lexical_tokens

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\[(])")
_FENCE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
# Link targets may hold one level of parentheses (Wikipedia-style URLs).
_MD_LINK = re.compile(r"\[([^\]]*)\]\((?:[^()]|\([^()]*\))*\)")
_EXCERPT_CHARS = 200
# Secondary sources must score at least this share of the top one to be worth a click.
_SECONDARY_SHARE = 0.5


@dataclass(frozen=True)
class Source:
    doc_id: str
    title: str
    url: str
    section: str
    excerpt: str
    score: float
    kind: str = "page"  # "api", "page", or "thread" (a past answer from the room)
    answered_by: str | None = None


@dataclass(frozen=True)
class SuggestedReply:
    question: str
    markdown: str
    confidence: float
    threshold: float
    would_reply: bool
    sources: list[Source]
    index_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["confidence"] = round(self.confidence, 4)
        for s in data["sources"]:
            s["score"] = round(s["score"], 6)
        return data


def escape_markdown(text: str) -> str:
    """Neutralise Markdown/HTML control characters in text we did not write (one line)."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", " ".join(text.split()))


def best_excerpt(chunk_text: str, question: str, *, limit: int = _EXCERPT_CHARS) -> str:
    """The sentence of a chunk that shares the most terms with the question, one line."""
    body = chunk_text.split("\n", 1)[1] if "\n" in chunk_text else chunk_text
    body = _FENCE_BLOCK.sub(" ", body)
    body = _MD_LINK.sub(r"\1", body)
    body = re.sub(r"^#+\s*", "", body, flags=re.M)
    body = re.sub(r"\s+", " ", body).strip()
    if not body:
        return ""
    wanted = set(lexical_tokens(question))
    sentences = [s.strip() for s in _SENTENCE.split(body) if len(s.strip()) > 20] or [body]
    best = max(
        enumerate(sentences),
        key=lambda item: (len(wanted & set(lexical_tokens(item[1]))), -item[0]),
    )[1]
    return best if len(best) <= limit else best[: limit - 1].rsplit(" ", 1)[0] + "…"


def choose_sources(hits: list[Hit], max_sources: int) -> list[Hit]:
    if not hits:
        return []
    top = hits[0].score
    return [
        h for i, h in enumerate(hits[:max_sources]) if i == 0 or h.score >= _SECONDARY_SHARE * top
    ]


def _source(h: Hit, question: str) -> Source:
    meta = dict(h.meta)
    if h.kind == "thread" and meta.get("answer"):
        excerpt = best_excerpt("answer\n" + meta["answer"], question)
    else:
        excerpt = best_excerpt(h.excerpt, question) or best_excerpt(h.intro, question)
    return Source(
        doc_id=h.doc_id,
        title=h.title,
        url=h.url,
        section=h.section,
        excerpt=excerpt,
        score=h.score,
        kind=h.kind,
        answered_by=meta.get("answered_by") or None,
    )


def compose_reply(
    result: SearchResult,
    *,
    threshold: float,
    max_sources: int = 3,
    index_version: str | None = None,
) -> SuggestedReply:
    chosen = choose_sources(result.hits, max_sources)
    # An earlier answer from the room leads: it speaks to this exact problem; docs follow.
    chosen.sort(key=lambda h: h.kind != "thread")
    sources = [_source(h, result.query) for h in chosen]
    confident = bool(sources) and result.confidence >= threshold
    if not sources:
        lead = "I couldn't find anything in the docs about this; a maintainer will take a look."
    elif confident and sources[0].kind == "thread":
        lead = "This was answered here before:"
    elif confident:
        lead = f"This looks covered by **{escape_markdown(sources[0].title)}**:"
    else:
        lead = "I'm not sure the docs answer this; these are the closest pages I found:"
    lines = [lead, ""]
    for n, s in enumerate(sources, start=1):
        line = f"{n}. [{escape_markdown(s.title)}]({link_target(s.url)})"
        if s.kind == "thread" and s.answered_by:
            line += f" — answered by {escape_markdown(s.answered_by)}"
            line += f": {escape_markdown(s.excerpt)}" if s.excerpt else ""
        elif s.excerpt:
            line += f" — {escape_markdown(s.excerpt)}"
        lines.append(line)
    if sources:
        lines += ["", f"Confidence: {result.confidence:.0%}"]
    return SuggestedReply(
        question=result.query,
        markdown="\n".join(lines).strip(),
        confidence=result.confidence,
        threshold=threshold,
        would_reply=confident,
        sources=sources,
        index_version=index_version,
    )

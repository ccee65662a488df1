"""Past answers (the room's own answered threads, or imported archives) as index documents.

A past answer is searched by the similarity of a new question to the *past question* first:
its document has the question as the first section and the answer as a second one, so the
chunker gives each its own chunk and the question chunk is what a paraphrase matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from bot.corpus.documents import Document

SOURCE = "past-answers"
KIND = "thread"
_TITLE_CHARS = 120
# Matrix mentions a question starts with: "@bot", "@bot:server", "@bot:server:8448", each with
# an optional ":" or "," after it (clients write "name: question").
_LEADING_MENTIONS = re.compile(r"^(?:@[\w.=/+-]+(?::[\w.-]+(?::\d+)?)?[:,]?\s+)+")


@dataclass(frozen=True)
class PastAnswer:
    key: str  # document id: "thread:<event id>" or the imported thread's URL
    question: str
    answer: str
    url: str
    title: str | None = None
    asked_by: str | None = None
    answered_by: str | None = None
    created_at: datetime | None = None
    source: str = "room"
    established_by: str = "maintainer-thread"


def matrix_permalink(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{room_id}/{event_id}"


def strip_leading_mentions(text: str) -> str:
    """``text`` without the mentions it starts with ("@bot how do I…" -> "how do I…"); all
    mentions and nothing else stays as it is."""
    stripped = _LEADING_MENTIONS.sub("", text.strip() + " ").strip()
    return stripped or text.strip()


def title_of(pa: PastAnswer) -> str:
    if pa.title and pa.title.strip():
        return " ".join(pa.title.split())[:_TITLE_CHARS]
    first = next((line.strip() for line in pa.question.splitlines() if line.strip()), "")
    # "@bot how do I…": the mention is how it was asked, not what it is about.
    return (strip_leading_mentions(first) or "Past question")[:_TITLE_CHARS]


def to_document(pa: PastAnswer, *, version: str = "live") -> Document:
    title = title_of(pa)
    by = f" (answered by {pa.answered_by})" if pa.answered_by else ""
    text = f"# {title}\n\n{pa.question.strip()}\n\n## Answer{by}\n\n{pa.answer.strip()}\n"
    return Document(
        doc_id=pa.key,
        title=title,
        url=pa.url,
        source=SOURCE,
        source_version=version,
        text=text,
        kind=KIND,
        meta=tuple(
            (k, v)
            for k, v in (
                ("answered_by", pa.answered_by or ""),
                ("answer", " ".join(pa.answer.split())[:400]),
                ("established_by", pa.established_by),
            )
            if v
        ),
    )


def iter_past_answer_documents(items: Iterable[PastAnswer]) -> Iterator[Document]:
    for pa in items:
        if pa.question.strip() and pa.answer.strip():
            yield to_document(pa)

"""Turn ranked documents into the suggested reply (Markdown + a JSON-able structure)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bot.answering.excerpts import best_excerpt
from bot.answering.keras_versions import VersionNote, detect_legacy_apis, notes_markdown
from bot.answering.missing_info import MissingInfo, detect_missing, render_ask
from bot.answering.render import link_target
from bot.answering.snippets import best_snippet, fenced
from bot.markdown_escape import escape_markdown, inline_markdown
from bot.retrieval.backends import detect_backend
from bot.retrieval.search import Hit, SearchResult

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
    snippet: str = ""  # a code example from this page that fits the question (plain code)


@dataclass(frozen=True)
class SuggestedReply:
    question: str
    markdown: str
    confidence: float
    threshold: float
    would_reply: bool
    sources: list[Source]
    index_version: str | None = None
    # Keras 2 / tf.keras-era APIs the question uses, with their Keras 3 replacements.
    notes: list[VersionNote] = field(default_factory=list)
    backend: str | None = None  # the Keras backend the question names, if any
    # What a maintainer would ask for first (version, traceback, code, shapes): asked for in
    # the reply only when it is unsure, since a confident answer needs none of it.
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["confidence"] = round(self.confidence, 4)
        for s in data["sources"]:
            s["score"] = round(s["score"], 6)
        return data


def _title(s: Source) -> str:
    """A page's title as Markdown: the docs' code spans stay code ("Customizing what happens
    in `fit()`"); a past thread's title is a person's words, so it is escaped whole."""
    return escape_markdown(s.title) if s.kind == "thread" else inline_markdown(s.title)


def choose_sources(hits: list[Hit], max_sources: int) -> list[Hit]:
    if not hits:
        return []
    top = hits[0].score
    return [
        h for i, h in enumerate(hits[:max_sources]) if i == 0 or h.score >= _SECONDARY_SHARE * top
    ]


def _source(h: Hit, question: str, chunks: Callable[[str], Sequence[str]] | None) -> Source:
    meta = dict(h.meta)
    if h.kind == "thread" and meta.get("answer"):
        excerpt = best_excerpt("answer\n" + meta["answer"], question)
    else:
        page = chunks(h.doc_id) if chunks else ()
        excerpt = best_excerpt(h.excerpt, question, page=page, intro=h.intro)
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


def _with_snippet(
    sources: list[Source],
    hits: list[Hit],
    question: str,
    chunks: Callable[[str], Sequence[str]] | None,
) -> list[Source]:
    """The first docs source gets the code example of its page that fits the question, if
    any: from the chunk search matched, the page's first chunk, then (given ``chunks``, the
    page's chunk texts by doc id) the rest of the page. Past answers are the room's words,
    shown as an excerpt only."""
    at = next((i for i, s in enumerate(sources) if s.kind != "thread"), None)
    if at is None:
        return sources
    h = hits[at]
    texts = [h.excerpt, h.intro, *(chunks(h.doc_id) if chunks else ())]
    found = best_snippet(texts, question, symbol=h.doc_id if h.kind == "api" else None)
    if found is None:
        return sources
    return [*sources[:at], replace(sources[at], snippet=found.code), *sources[at + 1 :]]


def compose_reply(
    result: SearchResult,
    *,
    threshold: float,
    max_sources: int = 3,
    index_version: str | None = None,
    notes: Sequence[VersionNote] | None = None,
    chunks: Callable[[str], Sequence[str]] | None = None,
    snippet: bool = True,
    has_code: bool = False,
) -> SuggestedReply:
    """The reply to ``result``. ``notes`` default to the Keras 3 notes for ``result.query``.
    ``chunks`` (doc id -> that document's chunk texts, e.g. ``LoadedIndex.chunk_texts``) lets
    the code example come from anywhere on the top page, not only from the chunk that
    matched; ``snippet=False`` leaves the example out. ``has_code``: the message came with a
    code block the text does not show (Matrix HTML ``<pre>``), so code is not asked for."""
    notes = detect_legacy_apis(result.query) if notes is None else list(notes)
    chosen = choose_sources(result.hits, max_sources)
    # An earlier answer from the room leads: it speaks to this exact problem; docs follow.
    chosen.sort(key=lambda h: h.kind != "thread")
    sources = [_source(h, result.query, chunks) for h in chosen]
    if snippet:
        sources = _with_snippet(sources, chosen, result.query, chunks)
    confident = bool(sources) and result.confidence >= threshold
    # The error the asker quoted is itself a Keras 3 change: the note is the answer.
    version_answer = bool(sources) and not confident and any(n.from_error for n in notes)
    note_lines = notes_markdown(notes)
    if version_answer:
        lead = "This error comes from a change in Keras 3:"
    elif not sources:
        lead = "I couldn't find anything in the docs about this; a maintainer will take a look."
    elif confident and sources[0].kind == "thread":
        lead = "This was answered here before:"
    elif confident and result.matched_question and chosen[0] is result.hits[0]:
        # The docs ask this very question: name it, so the asker sees where the answer is.
        lead = (
            f"This looks covered by **{_title(sources[0])}** "
            f"(“{escape_markdown(result.matched_question)}”):"
        )
    elif confident:
        lead = f"This looks covered by **{_title(sources[0])}**:"
    else:
        lead = "I'm not sure the docs answer this; these are the closest pages I found:"
    lines = [lead, ""]
    if version_answer:  # the note is the answer: it comes first, the pages after it
        lines += [*note_lines, "", "These pages may help too:", ""]
    shown: dict[str, int] = {}  # excerpt -> the number of the source that shows it
    for n, s in enumerate(sources, start=1):
        line = f"{n}. [{_title(s)}]({link_target(s.url)})"
        if s.kind == "thread" and s.answered_by:
            line += f" — answered by {escape_markdown(s.answered_by)}"
            line += f": {inline_markdown(s.excerpt)}" if s.excerpt else ""
        elif s.excerpt in shown:
            # Sibling APIs share docstrings (`text_` / `image_dataset_from_directory`'s
            # `directory`): the page stays, as it may be the one, but its line is not repeated.
            line += f" — the same text as {shown[s.excerpt]}."
        elif s.excerpt:
            line += f" — {inline_markdown(s.excerpt)}"
            shown[s.excerpt] = n
        lines.append(line)
        if s.snippet:  # fenced inside the list item, under the link it comes from
            lines.append(fenced(s.snippet, indent=" " * len(f"{n}. ")))
    # An unsure answer says what would decide it; the detector stays quiet when unsure itself.
    missing = (
        MissingInfo()
        if confident or version_answer
        else detect_missing(result.query, has_code=has_code)
    )
    # The room answers the asker's reply in the thread again, once (bot.room.handler).
    if ask := render_ask(missing, again=True):
        lines += ["", ask]
    if note_lines and not version_answer:
        lines += ["", *note_lines]
    if sources:
        lines += ["", f"Confidence: {result.confidence:.0%}"]
    return SuggestedReply(
        question=result.query,
        markdown="\n".join(lines).strip(),
        confidence=result.confidence,
        threshold=threshold,
        would_reply=confident or version_answer,
        sources=sources,
        index_version=index_version,
        notes=notes,
        backend=detect_backend(result.query),
        missing=list(missing.kinds),
    )

"""compose_reply / best_excerpt / escaping, on hand-made search results."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields
from typing import Any

import pytest

from bot.answering.reply import (
    SuggestedReply,
    best_excerpt,
    choose_sources,
    compose_reply,
    escape_markdown,
)
from bot.retrieval.search import Hit, SearchResult

# A Markdown link whose text may contain backslash-escaped characters.
LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\]\\])*)\]\(([^)\s]*)\)")


def hit(
    doc_id: str, score: float, *, title: str | None = None, excerpt: str = "", **extra: Any
) -> Hit:
    # Fields this test does not know about yet: None unless they have their own default.
    values: dict[str, Any] = {
        f.name: None for f in fields(Hit) if f.default is MISSING and f.default_factory is MISSING
    }
    values.update(
        doc_id=doc_id,
        title=title if title is not None else f"Title of {doc_id}",
        url=f"https://keras.io/{doc_id}/",
        kind="page",
        score=score,
        section="Section",
        excerpt=excerpt,
    )
    values.update(extra)
    return Hit(**values)


def result(
    hits: list[Hit], confidence: float, query: str = "how do I stop training early?"
) -> SearchResult:
    return SearchResult(query=query, mode="hybrid", hits=hits, confidence=confidence, symbols=[])


def unescaped(text: str, char: str) -> list[int]:
    """Positions of ``char`` in ``text`` not preceded by an odd number of backslashes."""
    out = []
    for i, c in enumerate(text):
        if c != char:
            continue
        slashes = len(text[:i]) - len(text[:i].rstrip("\\"))
        if slashes % 2 == 0:
            out.append(i)
    return out


# --- lead sentence and confidence ------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "confident"), [(0.9, True), (0.5, True), (0.49, False), (0.0, False)]
)
def test_lead_depends_on_confidence_vs_threshold(confidence: float, confident: bool) -> None:
    reply = compose_reply(
        result([hit("guides/a", 0.03, title="Callbacks")], confidence), threshold=0.5
    )
    lead = reply.markdown.splitlines()[0]
    assert reply.would_reply is confident
    assert reply.confidence == confidence
    assert reply.threshold == 0.5
    if confident:
        assert lead == "This looks covered by **Callbacks**:"
    else:
        assert lead.startswith("I'm not sure the docs answer this")
    assert reply.markdown.splitlines()[-1] == f"Confidence: {confidence:.0%}"


def test_empty_hit_list() -> None:
    reply = compose_reply(result([], 0.99), threshold=0.1)
    assert reply.sources == []
    assert reply.would_reply is False
    assert reply.markdown == (
        "I couldn't find anything in the docs about this; a maintainer will take a look."
    )
    assert "Confidence" not in reply.markdown
    assert choose_sources([], 3) == []


# --- sources ---------------------------------------------------------------------------------


def test_at_most_max_sources() -> None:
    hits = [hit(f"d{i}", 1.0 - i * 0.05) for i in range(6)]
    for max_sources, expected in ((1, 1), (2, 2), (3, 3), (10, 6)):
        reply = compose_reply(result(hits, 0.9), threshold=0.5, max_sources=max_sources)
        assert [s.doc_id for s in reply.sources] == [f"d{i}" for i in range(expected)]
    assert len(compose_reply(result(hits, 0.9), threshold=0.5).sources) == 3


def test_secondary_sources_below_half_the_top_score_are_dropped() -> None:
    hits = [hit("top", 0.04), hit("weak", 0.0199), hit("half", 0.02), hit("fourth", 0.039)]
    reply = compose_reply(result(hits, 0.9), threshold=0.5)
    # Only the first three hits are candidates; "weak" is under half of the top score.
    assert [s.doc_id for s in reply.sources] == ["top", "half"]
    numbered = [line for line in reply.markdown.splitlines() if re.match(r"\d+\. ", line)]
    assert [line.split(".")[0] for line in numbered] == ["1", "2"]


def test_top_source_kept_whatever_its_score() -> None:
    reply = compose_reply(result([hit("only", 0.0), hit("next", 0.0)], 0.1), threshold=0.5)
    assert [s.doc_id for s in reply.sources] == ["only", "next"]


def test_links_are_markdown_title_url() -> None:
    hits = [hit("guides/a", 0.9, title="Guide A"), hit("guides/b", 0.8, title="Guide B")]
    reply = compose_reply(result(hits, 0.9), threshold=0.5)
    lines = reply.markdown.splitlines()
    assert lines[2] == "1. [Guide A](https://keras.io/guides/a/)"
    assert lines[3] == "2. [Guide B](https://keras.io/guides/b/)"
    assert [m.groups() for m in LINK.finditer(reply.markdown)] == [
        ("Guide A", "https://keras.io/guides/a/"),
        ("Guide B", "https://keras.io/guides/b/"),
    ]


def test_source_fields_come_from_the_hit() -> None:
    chunk = (
        "Callbacks > EarlyStopping\n\nStop training when a monitored metric has stopped improving."
    )
    h = hit("keras.callbacks.EarlyStopping", 0.5, title="EarlyStopping", excerpt=chunk)
    reply = compose_reply(result([h], 0.9), threshold=0.5, index_version="v7")
    (source,) = reply.sources
    assert source.doc_id == h.doc_id
    assert source.url == h.url
    assert source.section == "Section"
    assert source.score == 0.5
    assert source.excerpt == "Stop training when a monitored metric has stopped improving."
    assert reply.index_version == "v7"
    assert reply.question == "how do I stop training early?"
    assert reply.markdown.splitlines()[2] == (
        "1. [EarlyStopping](https://keras.io/keras.callbacks.EarlyStopping/) — "
        "Stop training when a monitored metric has stopped improving."
    )


# --- escaping --------------------------------------------------------------------------------

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "[link](javascript:alert(1))",
    "`rm -rf /` and ```fences```",
    "x](javascript:alert(1)) [y",
    "**bold** _em_ # heading | pipe \\",
    "<script>alert('x')</script>",
    "![img](https://tracker.example/p.png)",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_user_controlled_title_and_excerpt_are_escaped(payload: str) -> None:
    chunk = f"Header line\n\nThis sentence talks about stopping training early {payload} indeed."
    hits = [
        hit("guides/a", 0.9, title=f"Title {payload}", excerpt=chunk),
        hit("guides/b", 0.8, title=payload, excerpt=chunk),
    ]
    for confidence in (0.9, 0.1):
        md = compose_reply(result(hits, confidence), threshold=0.5).markdown
        for char in "<>`[]":
            bad = [i for i in unescaped(md, char) if char not in "[]" or not _is_our_link(md, i)]
            assert bad == [], (char, md)
        assert "javascript:" not in [m.group(2) for m in LINK.finditer(md)]
        assert [m.group(2) for m in LINK.finditer(md)] == [
            "https://keras.io/guides/a/",
            "https://keras.io/guides/b/",
        ]


def _is_our_link(md: str, i: int) -> bool:
    return any(m.start() == i or m.start() + 1 + len(m.group(1)) == i for m in LINK.finditer(md))


def test_code_only_chunk_falls_back_to_the_document_intro() -> None:
    chunk = "Model.fit > Example\n\n```python\nmodel.fit(x, y, epochs=10)\n```"
    intro = "Model.fit\n\nTrains the model for a fixed number of epochs on a dataset."
    reply = compose_reply(
        result([hit("keras.Model.fit", 1.0, excerpt=chunk, intro=intro)], 0.9), threshold=0.5
    )
    assert reply.sources[0].excerpt == "Trains the model for a fixed number of epochs on a dataset."
    # Without an intro the source simply has no excerpt.
    reply = compose_reply(result([hit("keras.Model.fit", 1.0, excerpt=chunk)], 0.9), threshold=0.5)
    assert reply.sources[0].excerpt == ""
    assert (
        reply.markdown.splitlines()[2]
        == "1. [Title of keras.Model.fit](https://keras.io/keras.Model.fit/)"
    )


def test_markdown_links_in_excerpts_keep_only_their_text() -> None:
    chunk = "H\n\nSee [the callbacks guide](https://keras.io/guides/) for stopping training early."
    reply = compose_reply(result([hit("a", 1.0, excerpt=chunk)], 0.9), threshold=0.5)
    assert reply.sources[0].excerpt == "See the callbacks guide for stopping training early."
    hostile = "H\n\nSee [this](javascript:alert(1)) for stopping training early."
    reply = compose_reply(result([hit("a", 1.0, excerpt=hostile)], 0.9), threshold=0.5)
    assert "javascript" not in reply.markdown


def test_markdown_link_with_parentheses_in_url_keeps_only_its_text() -> None:
    chunk = (
        "H\n\nSee [dropout](https://en.wikipedia.org/wiki/Dilution_(neural_networks)) "
        "for regularising training."
    )
    assert best_excerpt(chunk, "dropout") == "See dropout for regularising training."


def test_escape_markdown() -> None:
    assert escape_markdown("a*b_c`d[e]f<g>h#i|j\\k") == "a\\*b\\_c\\`d\\[e\\]f\\<g\\>h\\#i\\|j\\\\k"
    assert escape_markdown("plain text, 1.5 (ok)") == "plain text, 1.5 (ok)"
    assert escape_markdown("") == ""


def test_title_with_newlines_stays_on_its_line() -> None:
    title = "Guide\n\n1. [Fake source](https://evil.example/)\n\n- more"
    reply = compose_reply(result([hit("a", 1.0, title=title)], 0.2), threshold=0.5)
    lines = reply.markdown.splitlines()
    assert len(lines) == 5  # lead, blank, one source, blank, confidence
    assert lines[2].startswith("1. [")


# --- best_excerpt ----------------------------------------------------------------------------

CHUNK = (
    "Callbacks > EarlyStopping\n\n"
    "Callbacks are objects that run at given stages of training. "
    "The EarlyStopping callback stops training when a monitored metric has stopped improving. "
    "Use the patience argument to wait a few epochs before stopping. "
    "See also ModelCheckpoint."
)


def test_best_excerpt_picks_the_sentence_sharing_most_terms() -> None:
    assert best_excerpt(CHUNK, "early stopping when metric stopped improving") == (
        "The EarlyStopping callback stops training when a monitored metric has stopped improving."
    )
    assert best_excerpt(CHUNK, "how many epochs of patience?") == (
        "Use the patience argument to wait a few epochs before stopping."
    )


def test_best_excerpt_ties_go_to_the_first_sentence() -> None:
    assert best_excerpt(CHUNK, "unrelated words entirely") == (
        "Callbacks are objects that run at given stages of training."
    )


def test_best_excerpt_skips_header_line_and_code() -> None:
    chunk = (
        "Page > Section\n\n"
        "```python\nmodel.save('x.keras')  # saving saving saving\n```\n"
        "Saving writes the whole model to a zip archive with its weights."
    )
    assert best_excerpt(chunk, "saving") == (
        "Saving writes the whole model to a zip archive with its weights."
    )
    assert "Page" not in best_excerpt(chunk, "page section")
    assert best_excerpt("H\n\n## Saving models to disk", "x") == "Saving models to disk"


def test_best_excerpt_of_a_one_line_chunk_uses_the_line() -> None:
    assert best_excerpt("just one line of text here", "text") == "just one line of text here"


@pytest.mark.parametrize(
    "chunk", ["", "Header only\n", "Header\n\n```\ncode only\n```", "H\n\n   "]
)
def test_best_excerpt_empty_body(chunk: str) -> None:
    assert best_excerpt(chunk, "anything") == ""


@pytest.mark.parametrize("limit", [200, 50, 20])
def test_best_excerpt_truncates(limit: int) -> None:
    sentence = "Stopping " + " ".join(f"word{i}" for i in range(200)) + "."
    got = best_excerpt(f"H\n\n{sentence}", "stopping", limit=limit)
    assert len(got) <= limit
    assert got.endswith("…")
    assert sentence.startswith(got[:-1])
    assert got[:-1].split(" ")[-1] in sentence.split(" ")  # cut at a word boundary


def test_best_excerpt_default_limit_is_200() -> None:
    long_sentence = "Training " + "x" * 500
    got = best_excerpt(f"H\n\n{long_sentence} y.", "training")
    assert len(got) <= 200
    assert got.endswith("…")


def test_excerpt_in_reply_is_one_short_line() -> None:
    chunk = "H\n\n" + "Stopping early\nis done   by callbacks " * 30 + "."
    reply = compose_reply(result([hit("a", 1.0, excerpt=chunk)], 0.9), threshold=0.5)
    assert "\n" not in reply.sources[0].excerpt
    assert len(reply.sources[0].excerpt) <= 200


# --- JSON ------------------------------------------------------------------------------------


def test_to_json_keys_and_rounding() -> None:
    hits = [hit("a", 0.123456789, excerpt=CHUNK), hit("b", 0.1)]
    reply = compose_reply(result(hits, 0.876543), threshold=0.5, index_version="v3")
    data = reply.to_json()
    assert set(data) == {
        "question",
        "markdown",
        "confidence",
        "threshold",
        "would_reply",
        "sources",
        "index_version",
        "notes",
        "backend",
    }
    assert data["notes"] == [] and data["backend"] is None
    assert data["confidence"] == 0.8765
    assert data["would_reply"] is True
    assert data["index_version"] == "v3"
    assert [set(s) for s in data["sources"]] == [
        {"doc_id", "title", "url", "section", "excerpt", "score", "kind", "answered_by"}
    ] * 2
    assert data["sources"][0]["score"] == 0.123457
    json.dumps(data)  # serialisable as is
    assert isinstance(reply, SuggestedReply)
    assert reply.sources[0].score == 0.123456789  # rounding only in the JSON


def test_to_json_of_empty_reply() -> None:
    data = compose_reply(result([], 0.0), threshold=0.5).to_json()
    assert data["sources"] == []
    assert data["would_reply"] is False
    assert data["index_version"] is None
